//! The reconcile planner: the heart of qus, and pure.
//!
//! Inputs: what qus wants (per entry: a spec + interpreter identity, or why
//! not), what the kernel has, and which entries qus registered earlier
//! (the ownership records). Output: per entry, its state and the minimal
//! actions that make the kernel right. Planning the result of applying a
//! plan yields no actions, which is why a second `qus register` and a
//! restarted `qusd` write nothing.
//!
//! Rules, in short:
//! - wanted and absent → register; wanted and identical → nothing (adopt it
//!   if it was someone else's; enable it if disabled);
//! - wanted and different → replace when qus registered it, or when
//!   `takeover` allows; otherwise report `conflict` and leave it;
//! - wanted with `F` and the interpreter file changed since qus registered
//!   it → replace, so the kernel drops the old open file;
//! - not wanted (excluded, native, no/refused interpreter, gone from the
//!   config) → unregister only what qus registered and nobody changed since;
//! - anything qus did not register and does not name is never touched.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::binfmt::{EntrySpec, KernelEntry};
use crate::model::{Others, Owned, Skip, Takeover, Want, World};

mod action;
mod prepare;
mod unregister;
pub mod want;

pub use action::{kernel_after, Action, Target};
pub use prepare::{prepare, Allowed, Flushed, Preparation, Readiness, SWITCH_HOLD};
pub use want::Overrides;

/// What a plan is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Make the kernel match the configuration (`qus register`, every
    /// qusd pass).
    Reconcile {
        /// Which same-named entries qus did not register it may replace.
        takeover: Takeover,
        /// Only act on these entry names (`qus register ARCH…`); `None` = all.
        scope: Option<BTreeSet<String>>,
        /// Leave these alone this time (their emulator file is still being
        /// written; the daemon acts once it is complete).
        holds: BTreeSet<String>,
    },
    /// Remove what qus owns (`qus unregister`, `unregister_on_stop`):
    /// these entry names, or every owned entry when `None`.
    Unregister { names: Option<BTreeSet<String>> },
}

impl Mode {
    /// A full reconcile with nothing held.
    pub fn reconcile(takeover: Takeover) -> Mode {
        Mode::Reconcile {
            takeover,
            scope: None,
            holds: BTreeSet::new(),
        }
    }

    /// Is this entry one the plan may act on (and report on)?
    pub fn in_scope(&self, name: &str) -> bool {
        match self {
            Mode::Reconcile { scope, .. } => scope.as_ref().is_none_or(|s| s.contains(name)),
            Mode::Unregister { names } => names.as_ref().is_none_or(|n| n.contains(name)),
        }
    }

    fn may_act(&self, name: &str) -> bool {
        match self {
            Mode::Reconcile { holds, .. } => self.in_scope(name) && !holds.contains(name),
            Mode::Unregister { .. } => self.in_scope(name),
        }
    }

    fn takeover(&self) -> Takeover {
        match self {
            Mode::Reconcile { takeover, .. } => *takeover,
            Mode::Unregister { .. } => Takeover::Never,
        }
    }
}

/// The state of one entry, as `qus status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryState {
    /// In the kernel, enabled, as wanted.
    Registered,
    /// Wanted, not in the kernel.
    Missing,
    /// In the kernel as wanted, but disabled.
    Disabled,
    /// In the kernel but outdated: the spec or the interpreter file changed.
    Stale,
    /// Same name, different entry, not qus's, and `takeover = false`.
    Conflict,
    NoInterpreter,
    /// Found an emulator that fails the safety rules.
    Refused,
    Excluded,
    Native,
    /// Registered by qus earlier, no longer configured.
    Orphaned,
    /// Another entry, under another name, already handles the arch and
    /// `others = "yield"`.
    HandledBy,
    /// Another tool's entry qus has no opinion about (not qus's, not
    /// configured): the planner never makes one; reports list them so the
    /// kernel's whole table is visible.
    Foreign,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Registered => "registered",
            EntryState::Missing => "missing",
            EntryState::Disabled => "disabled",
            EntryState::Stale => "stale",
            EntryState::Conflict => "conflict",
            EntryState::NoInterpreter => "no-interpreter",
            EntryState::Refused => "refused",
            EntryState::Excluded => "excluded",
            EntryState::Native => "native",
            EntryState::Orphaned => "orphaned",
            EntryState::HandledBy => "handled-by",
            EntryState::Foreign => "foreign",
        }
    }
}

/// The verdict on one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    pub arch: Option<String>,
    pub state: EntryState,
    /// Why, in words (skip reasons, conflict details).
    pub detail: Option<String>,
    /// What qus wants registered, if anything.
    pub wanted: Option<EntrySpec>,
    /// What the kernel has under this name.
    pub kernel: Option<KernelEntry>,
    /// Did qus register (or adopt) it?
    pub owned: bool,
    /// For an arch: the enabled entries that catch its programs, in the
    /// kernel's match order (the first is the one the kernel uses).
    pub handlers: Vec<String>,
    pub actions: Vec<Action>,
}

/// The whole plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub items: Vec<Item>,
}

impl Plan {
    /// Every action, in the order it must be applied.
    pub fn actions(&self) -> Vec<Action> {
        let mut all: Vec<Action> = self.items.iter().flat_map(|i| i.actions.clone()).collect();
        all.sort_by_key(Action::rank);
        all
    }

    /// How many writes to binfmt_misc applying this plan takes.
    #[cfg(test)]
    pub fn kernel_writes(&self) -> usize {
        self.actions().iter().map(Action::kernel_writes).sum()
    }
}

/// Plan: the observed world + what the plan is for → states and actions.
pub fn plan(world: &World, mode: &Mode) -> Plan {
    let reconciled = reconcile(world, mode.takeover());
    match mode {
        Mode::Reconcile { .. } => {
            let mut plan = reconciled;
            for item in &mut plan.items {
                if !mode.may_act(&item.name) {
                    item.actions.clear();
                }
            }
            plan
        }
        Mode::Unregister { .. } => unregister::unregister(world, reconciled, mode),
    }
}

/// Every entry qus has an opinion about or a record of, judged.
fn reconcile(world: &World, takeover: Takeover) -> Plan {
    let mut items = Vec::new();
    let mut seen = BTreeSet::new();
    for want in &world.wanted.items {
        seen.insert(want.name.clone());
        items.push(judge(want, world, takeover));
    }
    // Entries qus registered before and no longer names at all.
    for (name, record) in &world.owned {
        if seen.contains(name) {
            continue;
        }
        let k = world.kernel.get(name);
        let actions = match k {
            Some(k) if k.spec.equivalent(&record.spec) => vec![Action::Unregister {
                name: name.clone(),
                reason: "no longer configured".into(),
            }],
            // Dormant: only the record of what qus replaced, kept until
            // `qus unregister` puts that back.
            None if record.replaced.is_some() => Vec::new(),
            _ => vec![Action::Forget { name: name.clone() }],
        };
        items.push(Item {
            name: name.clone(),
            arch: record.arch.clone(),
            state: EntryState::Orphaned,
            detail: Some("registered by qus, no longer configured".into()),
            wanted: None,
            kernel: k.cloned(),
            owned: true,
            handlers: Vec::new(),
            actions,
        });
    }
    Plan { items }
}

/// An item for a want, before it is judged: what the kernel and the
/// records hold under its name, and which entries catch its arch.
fn item_for(want: &Want, world: &World) -> Item {
    let handlers = want
        .arch
        .as_ref()
        .and_then(|a| world.handlers.get(a))
        .cloned()
        .unwrap_or_default();
    Item {
        name: want.name.clone(),
        arch: want.arch.clone(),
        state: EntryState::Missing,
        detail: None,
        wanted: None,
        kernel: world.kernel.get(&want.name).cloned(),
        owned: world.owned.contains_key(&want.name),
        handlers,
        actions: Vec::new(),
    }
}

/// What an entry shadows (other entries catching its arch), for its detail.
fn shadow_detail(others: &[String], broken: Option<&String>) -> Option<String> {
    match (broken, others.is_empty()) {
        (_, true) => None,
        (Some(why), false) => Some(format!(
            "shadows {}: {why} (qemu.others = \"yield-always\" keeps yielding to it)",
            others.join(", ")
        )),
        (None, false) => Some(format!(
            "shadows {} (qemu.others = \"override\")",
            others.join(", ")
        )),
    }
}

fn judge(want: &Want, world: &World, takeover: Takeover) -> Item {
    let name = &want.name;
    let kernel = world.kernel.get(name);
    let record = world.owned.get(name);
    let mut item = item_for(want, world);
    let facts = Facts {
        // Did qus register what the kernel holds now (nobody changed it
        // since)?
        ours_unchanged: match (kernel, record) {
            (Some(k), Some(r)) => k.spec.equivalent(&r.spec),
            _ => false,
        },
        name_free: kernel.is_none(),
        record,
    };
    // Other enabled entries, under other names and not qus's, that catch
    // this arch's programs (Rosetta, FEX-Emu, box64, a wrapper).
    let others: Vec<String> = item
        .handlers
        .iter()
        .filter(|h| *h != name && !world.owned.contains_key(*h))
        .cloned()
        .collect();
    let broken = want
        .arch
        .as_ref()
        .and_then(|a| world.broken_handlers.get(a));
    let desired = match (&want.want, skipped(want, &others, broken)) {
        (_, Some((state, why))) => {
            let actions = withdraw_skipped(name, state, &why, &facts);
            item.state = state;
            item.detail = Some(why);
            item.actions = actions;
            return item;
        }
        (Ok(d), None) => d,
        (Err(_), None) => return item,
    };
    item.detail = shadow_detail(&others, broken);
    item.wanted = Some(desired.spec.clone());
    let target = Target {
        name: name.clone(),
        arch: want.arch.clone(),
        spec: desired.spec.clone(),
        identity: desired.identity,
        replaced: record.and_then(|r| r.replaced.clone()),
    };
    match kernel {
        None => judge_absent(&mut item, want, desired, target, world),
        Some(k) if k.spec.equivalent(&desired.spec) => {
            judge_same(&mut item, k, desired, target, &facts)
        }
        Some(k) if adoptable(want, k, &desired.spec, world) => {
            judge_adopted(&mut item, k, desired, target, &facts)
        }
        // qus's own entry, for another emulator: back to the line it
        // replaced where that line now runs the wanted file.
        Some(k) if facts.ours_unchanged => match readopted(want, desired, world, target) {
            // That line is what the kernel holds (its binfmt.d file gone,
            // so not the distribution's any more): keep it as it is.
            t if k.spec.equivalent(&t.spec) => judge_adopted(&mut item, k, desired, t, &facts),
            t => judge_takeover(&mut item, k, t, world, takeover, &facts),
        },
        Some(k) => judge_takeover(&mut item, k, target, world, takeover, &facts),
    }
    item
}

/// No entry of that name: register it; an adopted entry a flush wiped
/// goes back as the distribution's own line (see [`readopt`]).
fn judge_absent(
    item: &mut Item,
    want: &Want,
    desired: &crate::model::Desired,
    target: Target,
    world: &World,
) {
    item.state = EntryState::Missing;
    item.actions
        .push(Action::Register(readopted(want, desired, world, target)));
}

/// What qus knows of its own past with an entry.
struct Facts<'a> {
    /// Its ownership record, if any.
    record: Option<&'a Owned>,
    /// No entry of that name in the kernel.
    name_free: bool,
    /// qus registered what the kernel holds now, and nobody changed it.
    ours_unchanged: bool,
}

/// Why a want yields no registration (as a state and a detail), if so.
fn skipped(
    want: &Want,
    others: &[String],
    broken: Option<&String>,
) -> Option<(EntryState, String)> {
    match &want.want {
        Err(skip) => Some(match skip {
            Skip::Excluded(w) => (EntryState::Excluded, w.clone()),
            Skip::Native(w) => (EntryState::Native, w.clone()),
            Skip::NoInterpreter(w) => (EntryState::NoInterpreter, w.clone()),
            Skip::Refused(w) => (EntryState::Refused, w.clone()),
        }),
        Ok(_) if want.others == Others::Yield && !others.is_empty() && broken.is_none() => Some((
            EntryState::HandledBy,
            format!(
                "handled by {} (qemu.others = \"yield\"; \"override\" registers qus's anyway)",
                others[0]
            ),
        )),
        Ok(_) if want.others == Others::YieldAlways && !others.is_empty() => Some((
            EntryState::HandledBy,
            match broken {
                Some(why) => format!(
                    "handled by {}, though {why} (qemu.others = \"yield-always\"; \"yield\" \
                     registers qus's when the other fails)",
                    others[0]
                ),
                None => format!("handled by {} (qemu.others = \"yield-always\")", others[0]),
            },
        )),
        Ok(_) => None,
    }
}

/// A skipped entry: remove qus's own, forget a record of a changed one.
/// Not put back here: excluded or disabled means "no entry for this
/// arch", and the one qus took over would be one. Only an explicit
/// unregister hands the name back (see `unregister`).
fn withdraw_skipped(name: &str, state: EntryState, why: &str, facts: &Facts<'_>) -> Vec<Action> {
    if facts.ours_unchanged {
        vec![Action::Unregister {
            name: name.to_string(),
            reason: format!("{}: {why}", state.as_str()),
        }]
    } else if facts
        .record
        .is_some_and(|r| !(facts.name_free && r.replaced.is_some()))
    {
        vec![Action::Forget {
            name: name.to_string(),
        }]
    } else {
        // Nothing, or a dormant record (qus's entry already gone, the one
        // it replaced still to put back): kept as it is.
        Vec::new()
    }
}

/// The kernel holds the registration qus wants: re-register only when `F`
/// keeps an interpreter file that changed since; enable, record.
fn judge_same(
    item: &mut Item,
    k: &KernelEntry,
    desired: &crate::model::Desired,
    target: Target,
    facts: &Facts<'_>,
) {
    let record = facts.record;
    let file_changed = record
        .and_then(|r| r.identity)
        .is_some_and(|id| id != desired.identity);
    let record_current = record
        .is_some_and(|r| r.spec.equivalent(&desired.spec) && r.identity == Some(desired.identity));
    if file_changed && desired.spec.flags.fix_binary && facts.ours_unchanged {
        item.state = EntryState::Stale;
        item.detail =
            Some("interpreter file changed since registration (F keeps the old one)".into());
        item.actions.push(Action::Replace {
            target,
            reason: "interpreter file changed on disk".into(),
        });
        return;
    }
    item.state = if k.enabled {
        EntryState::Registered
    } else {
        EntryState::Disabled
    };
    if !k.enabled {
        item.actions.push(Action::Enable {
            name: item.name.clone(),
        });
    }
    if !record_current {
        item.actions.push(Action::Record(target));
    }
    item.owned = true;
}

/// Does the distribution's entry already do what qus would register? The
/// same emulator file (`distro_same_file`: by inode, through its links);
/// every flag qus wants and no other but `O` (Debian registers `OPF` where
/// qus would `PF`: the kernel then hands the emulator an open descriptor
/// of the program, which changes nothing it runs); and a magic that
/// catches the arch's programs as qus's does: the same magic and mask, or
/// (Debian's masks differ from upstream's in bits no Linux program sets)
/// both catch the arch's executables and position-independent programs
/// (its probe, as `ET_EXEC` and `ET_DYN`). Then replacing it would only
/// rewrite it: at every boot after `systemd-binfmt`, and at every
/// `systemctl restart systemd-binfmt`.
pub(crate) fn adoptable(want: &Want, k: &KernelEntry, wanted: &EntrySpec, world: &World) -> bool {
    world.distro_same_file.contains(&want.name) && does_the_same(want, &k.spec, wanted)
}

/// Would `have` run the arch's programs as `wanted` does, given that both
/// name one emulator file? The flags qus wants and no other but `O`, and
/// a magic that catches the same programs (see [`adoptable`]).
fn does_the_same(want: &Want, have: &EntrySpec, wanted: &EntrySpec) -> bool {
    let (got, need) = (have.flags.normalized(), wanted.flags.normalized());
    let flags_ok = got.preserve_argv0 == need.preserve_argv0
        && got.fix_binary == need.fix_binary
        && got.credentials == need.credentials
        && (got.open_binary || !need.open_binary);
    let catches_the_same = have.matcher.equivalent(&wanted.matcher)
        || want
            .arch
            .as_deref()
            .and_then(crate::probe::find)
            .map(|p| crate::binfmt::elf::both_types(p.program))
            .is_some_and(|heads| {
                heads.len() == 2
                    && heads
                        .iter()
                        .all(|h| have.matcher.catches(h) && wanted.matcher.catches(h))
            });
    flags_ok && catches_the_same
}

/// The distribution's line qus replaced or adopted, when it would do what
/// qus is about to register: its interpreter is (through its links) the
/// very file qus wants, passes the safety rules, and the line does what
/// qus's entry would. Then that line goes back, adopted as it is, instead
/// of qus's own: after a flush (`systemctl restart systemd-binfmt` wipes
/// every entry, and then registers that same line again: nothing to
/// replace afterwards), and when a newer emulator qus had switched to goes
/// away (a QEMU channel package removed: the machine is as before it).
fn readopt(want: &Want, desired: &crate::model::Desired, world: &World) -> Option<EntrySpec> {
    let line = world.owned.get(&want.name)?.replaced.as_ref()?;
    (world.restorable.get(&want.name) == Some(&desired.identity)
        && does_the_same(want, line, &desired.spec))
    .then(|| line.clone())
}

/// `target`, or the line [`readopt`] gives back, adopted as it is.
fn readopted(
    want: &Want,
    desired: &crate::model::Desired,
    world: &World,
    target: Target,
) -> Target {
    match readopt(want, desired, world) {
        Some(line) => Target {
            spec: line.clone(),
            replaced: Some(line),
            ..target
        },
        None => target,
    }
}

/// Adopt the distribution's entry as it is: recorded with itself as the
/// entry it replaced, which is what tells an adopted entry from one qus
/// registered. Under `F` a changed emulator file re-registers the
/// distribution's own line (the kernel then opens the new file); `qus
/// unregister` and the package's removal leave it in place, as it was.
fn judge_adopted(
    item: &mut Item,
    k: &KernelEntry,
    desired: &crate::model::Desired,
    target: Target,
    facts: &Facts<'_>,
) {
    let as_is = crate::model::Desired {
        spec: k.spec.clone(),
        identity: desired.identity,
    };
    let target = Target {
        spec: k.spec.clone(),
        replaced: Some(k.spec.clone()),
        ..target
    };
    judge_same(item, k, &as_is, target, facts);
    item.wanted = Some(k.spec.clone());
    if item.state != EntryState::Stale {
        item.detail = Some(format!(
            "the distribution's entry (flags {}, {}), adopted as it is: the same emulator file",
            k.spec.flags,
            k.spec.interpreter.display()
        ));
    }
}

/// Is this record one of an adopted entry (see [`judge_adopted`])?
pub(crate) fn adopted_as_is(record: &Owned) -> bool {
    record
        .replaced
        .as_ref()
        .is_some_and(|r| r.equivalent(&record.spec))
}

/// Same name, different registration: may qus take it over? Only what
/// `takeover` allows, and never what it could not record first.
fn judge_takeover(
    item: &mut Item,
    k: &KernelEntry,
    target: Target,
    world: &World,
    takeover: Takeover,
    facts: &Facts<'_>,
) {
    let may_take = match takeover {
        Takeover::All => true,
        Takeover::Never => false,
        Takeover::Distro => world.distro.contains(&item.name),
    };
    let unrecordable = world.records_unwritable.as_deref().filter(|_| may_take);
    // The same takeover failed before, and neither side changed since: try
    // it again and the other tool's entry is removed and put back for
    // nothing, on every pass.
    let failed_before = world
        .failed_takeovers
        .get(&item.name)
        .filter(|f| {
            f.identity == target.identity
                && f.wanted.equivalent(&target.spec)
                && f.theirs.equivalent(&k.spec)
        })
        .filter(|_| may_take)
        .map(|f| f.why.clone());
    judge_different(
        item,
        k,
        target,
        takeover,
        may_take && unrecordable.is_none() && failed_before.is_none(),
        facts,
    );
    if let Some(why) = unrecordable.filter(|_| item.state == EntryState::Conflict) {
        item.detail = Some(format!(
            "another tool's entry named {}; not taken over: what it replaces could not be \
             recorded ({why})",
            item.name
        ));
    } else if let Some(why) = failed_before.filter(|_| item.state == EntryState::Conflict) {
        item.detail = Some(format!(
            "another tool's entry named {}; the takeover failed ({why}) and is not tried \
             again until the emulator, the configuration or that entry changes",
            item.name
        ));
    }
}

/// Same name, different registration: replace qus's own or what
/// `takeover` allows; otherwise a conflict, left alone.
fn judge_different(
    item: &mut Item,
    k: &KernelEntry,
    target: Target,
    takeover: Takeover,
    may_take: bool,
    facts: &Facts<'_>,
) {
    if facts.ours_unchanged || may_take {
        item.state = EntryState::Stale;
        let reason = if facts.ours_unchanged {
            "configuration or emulator changed"
        } else if takeover == Takeover::All {
            "takeover of a different same-named entry"
        } else {
            "takeover of the distribution's entry"
        };
        item.detail = Some(reason.into());
        let replaced = if facts.ours_unchanged {
            target.replaced.clone()
        } else {
            Some(k.spec.clone())
        };
        item.actions.push(Action::Replace {
            target: Target { replaced, ..target },
            reason: reason.into(),
        });
        return;
    }
    item.state = EntryState::Conflict;
    let flags = k.spec.flags.normalized().to_string();
    item.detail = Some(format!(
        "another tool's entry named {} exists (interpreter {}, flags {}); left alone: \
         takeover = true replaces it",
        item.name,
        k.spec.interpreter.display(),
        if flags.is_empty() { "none" } else { &flags }
    ));
    if facts.record.is_some() {
        item.actions.push(Action::Forget {
            name: item.name.clone(),
        });
    }
    item.owned = false;
}

#[cfg(test)]
mod tests;
