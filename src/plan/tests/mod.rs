//! The planner as plain data in, actions out: no kernel, no files.

use super::*;
use crate::binfmt::{Flags, KernelEntries, Matcher};
use crate::model::{Desired, Identity, Owned, Wanted};
use std::collections::BTreeMap;
use std::path::PathBuf;

mod adopting;
mod giving_back;

/// The planner over a world made of these parts.
fn plan(
    wanted: &Wanted,
    kernel: &KernelEntries,
    owned: &BTreeMap<String, Owned>,
    mode: &Mode,
) -> Plan {
    let world = World {
        mounted: true,
        enabled: Some(true),
        match_order: kernel.keys().cloned().collect(),
        kernel: kernel.clone(),
        owned: owned.clone(),
        wanted: wanted.clone(),
        ..World::default()
    };
    super::plan(&world, mode)
}

fn spec(interp: &str, flags: &str) -> EntrySpec {
    EntrySpec {
        matcher: Matcher::Magic {
            offset: 0,
            magic: b"\x7fELF\x02\x01\x01\x00".to_vec(),
            mask: Some(b"\xff\xff\xff\xff\xff\xff\xff\x00".to_vec()),
        },
        interpreter: PathBuf::from(interp),
        flags: Flags::parse(flags).expect("flags"),
    }
}

fn id(n: u64) -> Identity {
    Identity {
        dev: 1,
        ino: n,
        size: 100,
        mtime_ns: 5,
    }
}

fn want(name: &str, s: &EntrySpec, ident: Identity) -> Want {
    Want {
        name: name.into(),
        arch: Some("aarch64".into()),
        want: Ok(Desired {
            spec: s.clone(),
            identity: ident,
        }),
        others: Others::Yield,
    }
}

fn skipped(name: &str) -> Want {
    Want {
        name: name.into(),
        arch: Some("aarch64".into()),
        want: Err(Skip::NoInterpreter("gone".into())),
        others: Others::Yield,
    }
}

fn kernel(entries: &[(&str, &EntrySpec, bool)]) -> KernelEntries {
    entries
        .iter()
        .map(|(n, s, enabled)| {
            (
                n.to_string(),
                KernelEntry {
                    enabled: *enabled,
                    spec: (*s).clone(),
                },
            )
        })
        .collect()
}

fn owned(entries: &[(&str, &EntrySpec, Identity)]) -> BTreeMap<String, Owned> {
    entries
        .iter()
        .map(|(n, s, i)| {
            (
                n.to_string(),
                Owned {
                    arch: None,
                    spec: (*s).clone(),
                    identity: Some(*i),
                    replaced: None,
                },
            )
        })
        .collect()
}

fn opts(takeover: bool) -> Mode {
    Mode::reconcile(if takeover {
        Takeover::All
    } else {
        Takeover::Never
    })
}

fn only(plan: &Plan) -> &Item {
    assert_eq!(plan.items.len(), 1, "{plan:#?}");
    &plan.items[0]
}

#[test]
fn missing_entry_is_registered() {
    let s = spec("/q", "PF");
    let p = plan(
        &Wanted {
            items: vec![want("qemu-a", &s, id(1))],
        },
        &kernel(&[]),
        &owned(&[]),
        &opts(true),
    );
    let item = only(&p);
    assert_eq!(item.state, EntryState::Missing);
    assert!(matches!(&item.actions[..], [Action::Register(t)] if t.name == "qemu-a"));
    assert_eq!(p.kernel_writes(), 1);
}

#[test]
fn identical_owned_entry_needs_nothing() {
    let s = spec("/q", "PF");
    let p = plan(
        &Wanted {
            items: vec![want("qemu-a", &s, id(1))],
        },
        &kernel(&[("qemu-a", &s, true)]),
        &owned(&[("qemu-a", &s, id(1))]),
        &opts(true),
    );
    assert_eq!(only(&p).state, EntryState::Registered);
    assert!(only(&p).actions.is_empty());
}

#[test]
fn identical_foreign_entry_is_adopted_without_writing() {
    let s = spec("/q", "CF");
    // The kernel shows C as OC: still identical.
    let k = spec("/q", "OCF");
    let p = plan(
        &Wanted {
            items: vec![want("qemu-a", &s, id(1))],
        },
        &kernel(&[("qemu-a", &k, true)]),
        &owned(&[]),
        &opts(false),
    );
    let item = only(&p);
    assert_eq!(item.state, EntryState::Registered);
    assert!(item.owned);
    assert!(matches!(&item.actions[..], [Action::Record(_)]));
    assert_eq!(p.kernel_writes(), 0);
}

#[test]
fn disabled_entry_is_enabled() {
    let s = spec("/q", "PF");
    let p = plan(
        &Wanted {
            items: vec![want("qemu-a", &s, id(1))],
        },
        &kernel(&[("qemu-a", &s, false)]),
        &owned(&[("qemu-a", &s, id(1))]),
        &opts(true),
    );
    assert_eq!(only(&p).state, EntryState::Disabled);
    assert!(matches!(&only(&p).actions[..], [Action::Enable { .. }]));
}

#[test]
fn changed_config_replaces_our_entry_even_without_takeover() {
    let old = spec("/q", "PF");
    let new = spec("/q", "P");
    let p = plan(
        &Wanted {
            items: vec![want("qemu-a", &new, id(1))],
        },
        &kernel(&[("qemu-a", &old, true)]),
        &owned(&[("qemu-a", &old, id(1))]),
        &opts(false),
    );
    assert_eq!(only(&p).state, EntryState::Stale);
    assert!(matches!(&only(&p).actions[..], [Action::Replace { .. }]));
}

#[test]
fn different_foreign_entry_is_a_conflict_without_takeover() {
    let theirs = spec("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "OPF");
    let ours = spec("/usr/bin/qemu-aarch64-static", "PF");
    let w = Wanted {
        items: vec![want("qemu-a", &ours, id(1))],
    };
    let k = kernel(&[("qemu-a", &theirs, true)]);
    let p = plan(&w, &k, &owned(&[]), &opts(false));
    assert_eq!(only(&p).state, EntryState::Conflict);
    assert!(only(&p).actions.is_empty());
    let p = plan(&w, &k, &owned(&[]), &opts(true));
    assert_eq!(only(&p).state, EntryState::Stale);
    assert!(matches!(&only(&p).actions[..], [Action::Replace { .. }]));
}

#[test]
fn upgraded_interpreter_is_replaced_only_with_f() {
    for (flags, replaced) in [("PF", true), ("P", false)] {
        let s = spec("/q", flags);
        let p = plan(
            &Wanted {
                items: vec![want("qemu-a", &s, id(2))],
            },
            &kernel(&[("qemu-a", &s, true)]),
            &owned(&[("qemu-a", &s, id(1))]),
            &opts(true),
        );
        let item = only(&p);
        if replaced {
            assert_eq!(item.state, EntryState::Stale);
            assert!(matches!(&item.actions[..], [Action::Replace { .. }]));
        } else {
            // The kernel opens the file at each exec: just note the new identity.
            assert_eq!(item.state, EntryState::Registered);
            assert!(matches!(&item.actions[..], [Action::Record(_)]));
        }
    }
}

#[test]
fn unwanted_entries_are_removed_only_when_ours_and_unchanged() {
    let s = spec("/q", "PF");
    let other = spec("/other", "");
    let w = Wanted {
        items: vec![skipped("qemu-a")],
    };
    // Ours, unchanged: removed.
    let p = plan(
        &w,
        &kernel(&[("qemu-a", &s, true)]),
        &owned(&[("qemu-a", &s, id(1))]),
        &opts(true),
    );
    assert_eq!(only(&p).state, EntryState::NoInterpreter);
    assert!(matches!(&only(&p).actions[..], [Action::Unregister { .. }]));
    // Not ours: untouched.
    let p = plan(
        &w,
        &kernel(&[("qemu-a", &s, true)]),
        &owned(&[]),
        &opts(true),
    );
    assert!(only(&p).actions.is_empty());
    // Ours once, but someone replaced it since: forget it, leave theirs.
    let p = plan(
        &w,
        &kernel(&[("qemu-a", &other, true)]),
        &owned(&[("qemu-a", &s, id(1))]),
        &opts(true),
    );
    assert!(matches!(&only(&p).actions[..], [Action::Forget { .. }]));
}

#[test]
fn orphans_are_removed_and_foreign_entries_never_appear() {
    let s = spec("/q", "PF");
    let jar = spec("/usr/bin/jexec", "");
    let p = plan(
        &Wanted::default(),
        &kernel(&[("qemu-gone", &s, true), ("jar", &jar, true)]),
        &owned(&[("qemu-gone", &s, id(1))]),
        &opts(true),
    );
    let item = only(&p);
    assert_eq!(item.name, "qemu-gone");
    assert_eq!(item.state, EntryState::Orphaned);
    assert!(matches!(&item.actions[..], [Action::Unregister { .. }]));
}

#[test]
fn scope_limits_actions_not_states() {
    let s = spec("/q", "PF");
    let w = Wanted {
        items: vec![want("qemu-a", &s, id(1)), want("qemu-b", &s, id(1))],
    };
    let o = Mode::Reconcile {
        takeover: Takeover::All,
        scope: Some(["qemu-b".to_string()].into()),
        holds: ["qemu-b".to_string()].into(),
    };
    let p = plan(&w, &kernel(&[]), &owned(&[]), &o);
    assert!(p.actions().is_empty(), "held entries wait");
    let o = Mode::Reconcile {
        takeover: Takeover::All,
        scope: Some(["qemu-b".to_string()].into()),
        holds: Default::default(),
    };
    let p = plan(&w, &kernel(&[]), &owned(&[]), &o);
    assert_eq!(p.items[0].state, EntryState::Missing);
    assert!(p.items[0].actions.is_empty());
    assert_eq!(p.items[1].actions.len(), 1);
}

#[test]
fn actions_are_ordered_removals_first() {
    let s = spec("/q", "PF");
    let p = plan(
        &Wanted {
            items: vec![want("qemu-new", &s, id(1)), skipped("qemu-old")],
        },
        &kernel(&[("qemu-old", &s, true)]),
        &owned(&[("qemu-old", &s, id(1))]),
        &opts(true),
    );
    let actions = p.actions();
    assert!(matches!(actions[0], Action::Unregister { .. }));
    assert!(matches!(actions[1], Action::Register(_)));
}

/// Apply a plan to a model of the kernel and the records, as `apply` does.
fn simulate(p: &Plan, k: &mut KernelEntries, o: &mut BTreeMap<String, Owned>) {
    let actions = p.actions();
    *k = kernel_after(k, &actions);
    for a in &actions {
        match a {
            Action::Register(t) | Action::Replace { target: t, .. } | Action::Record(t) => {
                o.insert(t.name.clone(), t.owned());
            }
            Action::Unregister { name, .. } | Action::Forget { name } => {
                o.remove(name);
            }
            Action::Enable { .. }
            | Action::Restore { .. }
            | Action::Mount { .. }
            | Action::SwitchOn
            | Action::RestoreOther { .. } => {}
        }
    }
}

/// Every combination of kernel state, ownership record, wish, takeover and
/// file change: planning again after applying writes nothing, and an entry
/// qus neither owns nor may take over is never written.
#[test]
fn exhaustive_idempotence_and_hands_off_foreign_entries() {
    let ours = spec("/q", "PF");
    let ours_no_f = spec("/q", "P");
    let theirs = spec("/theirs", "OCF");
    let mut cases = 0;
    for wish in 0..4 {
        for kstate in 0..5 {
            for rec in 0..3 {
                for takeover in [false, true] {
                    cases += 1;
                    let (wspec, wid) = match wish {
                        0 => (Some(&ours), id(1)),
                        1 => (Some(&ours), id(2)), // file upgraded
                        2 => (Some(&ours_no_f), id(2)),
                        _ => (None, id(1)),
                    };
                    let w = Wanted {
                        items: vec![match wspec {
                            Some(s) => want("qemu-a", s, wid),
                            None => skipped("qemu-a"),
                        }],
                    };
                    let mut k = match kstate {
                        0 => kernel(&[]),
                        1 => kernel(&[("qemu-a", &ours, true)]),
                        2 => kernel(&[("qemu-a", &ours, false)]),
                        3 => kernel(&[("qemu-a", &theirs, true)]),
                        _ => kernel(&[("qemu-a", &ours_no_f, true)]),
                    };
                    k.insert(
                        "jar".into(),
                        KernelEntry {
                            enabled: true,
                            spec: theirs.clone(),
                        },
                    );
                    let mut o = match rec {
                        0 => owned(&[]),
                        1 => owned(&[("qemu-a", &ours, id(1))]),
                        _ => owned(&[("qemu-a", &ours_no_f, id(1))]),
                    };
                    let before = k.clone();
                    let ctx =
                        format!("wish {wish} kernel {kstate} record {rec} takeover {takeover}");
                    let p1 = plan(&w, &k, &o, &opts(takeover));
                    // Hands off: a different entry qus did not register stays
                    // unless takeover is on and qus wants the name.
                    let recorded_matches = o
                        .get("qemu-a")
                        .zip(before.get("qemu-a"))
                        .is_some_and(|(r, ke)| r.spec.equivalent(&ke.spec));
                    if let Some(ke) = before.get("qemu-a") {
                        let identical = wspec.is_some_and(|s| s.equivalent(&ke.spec));
                        if !(recorded_matches || identical || takeover && wspec.is_some()) {
                            assert_eq!(p1.kernel_writes(), 0, "{ctx}: touched a foreign entry");
                        }
                    }
                    simulate(&p1, &mut k, &mut o);
                    assert_eq!(k.get("jar"), before.get("jar"), "{ctx}");
                    let p2 = plan(&w, &k, &o, &opts(takeover));
                    assert_eq!(
                        p2.kernel_writes(),
                        0,
                        "{ctx}: second pass writes: {:#?}",
                        p2.actions()
                    );
                    simulate(&p2, &mut k, &mut o);
                    let p3 = plan(&w, &k, &o, &opts(takeover));
                    assert!(
                        p3.actions().is_empty(),
                        "{ctx}: third pass acts: {:#?}",
                        p3.actions()
                    );
                }
            }
        }
    }
    assert_eq!(cases, 120);
}
