//! The unregister plan: what `qus unregister` and `unregister_on_stop`
//! remove, and what they put back. Apart from reconciling because giving a
//! name back has rules of its own: only what qus registered goes, and what
//! qus took it over from returns only when its interpreter still passes
//! the safety rules.

use super::{Action, Item, Mode, Plan};
use crate::model::{Owned, World};

/// Remove qus's entry and hand the name back: put back what qus took it
/// over from (when it can: its interpreter still exists). Only for an
/// explicit unregister (`qus unregister`, `unregister_on_stop`).
fn withdraw(name: &str, reason: String, world: &World) -> Vec<Action> {
    let mut actions = vec![Action::Unregister {
        name: name.to_string(),
        reason,
    }];
    let replaced = world.owned.get(name).and_then(|r| r.replaced.clone());
    if let Some(spec) = replaced.filter(|_| world.restorable.contains_key(name)) {
        actions.push(Action::Restore {
            name: name.to_string(),
            spec,
        });
    }
    actions
}

/// `qus unregister` over a dormant record: put back the entry qus had
/// replaced, unless its interpreter fails the safety rules now or is gone
/// (then the record stays, and the item says why).
fn give_back_dormant(item: &mut Item, record: &Owned, world: &World) {
    let Some(spec) = &record.replaced else { return };
    if let Some(why) = world.restore_refused.get(&item.name) {
        item.detail = Some(format!(
            "{} not put back: its interpreter fails the safety rules now ({why}); the \
             record stays",
            item.name
        ));
    } else if world.restorable.contains_key(&item.name) {
        item.actions.push(Action::Restore {
            name: item.name.clone(),
            spec: spec.clone(),
        });
    } else {
        item.detail = Some(format!(
            "{} not put back: its interpreter {} is gone; the record stays",
            item.name,
            spec.interpreter.display()
        ));
    }
}

/// Unregister: remove an entry in scope when qus registered exactly what
/// the kernel holds, or when it is identical to what qus would register
/// (so a configured entry adopted from another tool counts as owned).
/// Records of entries that are gone are dropped. Anything else is left
/// alone, with a note when the user named it.
pub(super) fn unregister(world: &World, reconciled: Plan, mode: &Mode) -> Plan {
    let named = matches!(mode, Mode::Unregister { names: Some(_) });
    let mut items = Vec::new();
    for mut item in reconciled.items {
        if !mode.in_scope(&item.name) {
            continue;
        }
        item.actions.clear();
        let record = world.owned.get(&item.name);
        match &item.kernel {
            None => match record {
                // A dormant record (qus's entry went, what it replaced
                // was kept): put that back now.
                Some(r) if r.replaced.is_some() => give_back_dormant(&mut item, r, world),
                Some(_) => item.actions.push(Action::Forget {
                    name: item.name.clone(),
                }),
                None if !named => continue,
                None => {}
            },
            Some(k) => {
                let recorded = record.is_some_and(|o| o.spec.equivalent(&k.spec));
                let configured_same = item.wanted.as_ref().is_some_and(|w| w.equivalent(&k.spec));
                if let Some(why) = world.restore_refused.get(&item.name) {
                    // What would go back fails the safety rules now: keep
                    // qus's entry and the record until that is fixed.
                    item.detail = Some(format!(
                        "{} not removed: the entry it replaced would go back with an \
                         interpreter that fails the safety rules now ({why}); fix that and \
                         unregister again",
                        item.name
                    ));
                } else if recorded && record.is_some_and(super::adopted_as_is) {
                    // The distribution's entry, adopted as it was: it
                    // stays; only the record goes.
                    item.owned = false;
                    item.detail = Some(format!(
                        "{} is the distribution's entry, adopted as it was: left in place",
                        item.name
                    ));
                    item.actions.push(Action::Forget {
                        name: item.name.clone(),
                    });
                } else if recorded || configured_same {
                    // Put back what qus took the name over from, too.
                    item.actions = withdraw(&item.name, "qus unregister".into(), world);
                } else if named {
                    item.owned = false;
                    item.detail = Some(format!("{} is not owned by qus; left alone", item.name));
                } else {
                    continue;
                }
            }
        }
        items.push(item);
    }
    Plan { items }
}
