//! Giving entries back: `qus unregister`, yielding to other handlers, and
//! putting back what qus took over.

use super::*;

fn unregister(names: Option<&[&str]>) -> Mode {
    Mode::Unregister {
        names: names.map(|n| n.iter().map(|s| s.to_string()).collect()),
    }
}

#[test]
fn unregister_removes_what_qus_recorded_and_nothing_else() {
    let s = spec("/q", "PF");
    let theirs = spec("/theirs", "F");
    let w = Wanted {
        items: vec![want("qemu-a", &s, id(1)), want("qemu-b", &s, id(1))],
    };
    // qemu-a: recorded and unchanged; qemu-b: someone else's, different;
    // python: never named, never recorded.
    let k = kernel(&[
        ("qemu-a", &s, true),
        ("qemu-b", &theirs, true),
        ("python", &theirs, true),
    ]);
    let o = owned(&[("qemu-a", &s, id(1))]);
    let p = plan(&w, &k, &o, &unregister(None));
    let removed: Vec<&Action> = p.items.iter().flat_map(|i| &i.actions).collect();
    assert!(
        matches!(&removed[..], [Action::Unregister { name, .. }] if name == "qemu-a"),
        "{p:#?}"
    );
    assert!(p.items.iter().all(|i| i.name != "python"));
}

#[test]
fn unregister_counts_an_identical_configured_entry_as_owned() {
    let s = spec("/q", "PF");
    let w = Wanted {
        items: vec![want("qemu-a", &s, id(1))],
    };
    // Registered by another tool exactly as qus would: no record, still ours.
    let p = plan(
        &w,
        &kernel(&[("qemu-a", &s, true)]),
        &owned(&[]),
        &unregister(None),
    );
    assert!(matches!(&only(&p).actions[..], [Action::Unregister { .. }]));
}

#[test]
fn unregister_drops_records_of_entries_that_are_gone() {
    let s = spec("/q", "PF");
    let w = Wanted {
        items: vec![want("qemu-a", &s, id(1))],
    };
    let p = plan(
        &w,
        &kernel(&[]),
        &owned(&[("qemu-a", &s, id(1))]),
        &unregister(None),
    );
    assert!(matches!(&only(&p).actions[..], [Action::Forget { .. }]));
    assert_eq!(p.kernel_writes(), 0);
}

#[test]
fn unregister_by_name_leaves_others_and_explains_a_foreign_entry() {
    let s = spec("/q", "PF");
    let theirs = spec("/theirs", "F");
    let w = Wanted {
        items: vec![want("qemu-a", &s, id(1)), want("qemu-b", &s, id(1))],
    };
    let k = kernel(&[("qemu-a", &s, true), ("qemu-b", &theirs, true)]);
    let o = owned(&[("qemu-a", &s, id(1))]);
    let p = plan(&w, &k, &o, &unregister(Some(&["qemu-b"])));
    let item = only(&p);
    assert_eq!(item.name, "qemu-b");
    assert!(item.actions.is_empty(), "{item:#?}");
    assert!(!item.owned);
    assert!(item
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("not owned by qus")));
    assert_eq!(p.kernel_writes(), 0);
}

#[test]
fn unregister_of_a_changed_recorded_entry_leaves_it() {
    // qus registered /q, someone replaced it with /theirs since: not ours.
    let s = spec("/q", "PF");
    let theirs = spec("/theirs", "F");
    let w = Wanted {
        items: vec![want("qemu-a", &s, id(1))],
    };
    let p = plan(
        &w,
        &kernel(&[("qemu-a", &theirs, true)]),
        &owned(&[("qemu-a", &s, id(1))]),
        &unregister(None),
    );
    assert_eq!(p.kernel_writes(), 0, "{p:#?}");
}

fn world_with(
    wants: Vec<Want>,
    kernel: KernelEntries,
    owned: BTreeMap<String, Owned>,
    handlers: &[(&str, &[&str])],
    distro: &[&str],
) -> World {
    World {
        mounted: true,
        enabled: Some(true),
        match_order: kernel.keys().cloned().collect(),
        kernel,
        owned,
        wanted: Wanted { items: wants },
        handlers: handlers
            .iter()
            .map(|(a, h)| (a.to_string(), h.iter().map(|s| s.to_string()).collect()))
            .collect(),
        distro: distro.iter().map(|s| s.to_string()).collect(),
        ..World::default()
    }
}

#[test]
fn another_handler_makes_qus_yield_unless_override() {
    let s = spec("/q", "PF");
    let rosetta = spec("/rosetta", "");
    let k = kernel(&[("rosetta", &rosetta, true)]);
    let w = world_with(
        vec![want("qemu-a", &s, id(1))],
        k.clone(),
        owned(&[]),
        &[("aarch64", &["rosetta"])],
        &[],
    );
    let p = crate::plan::plan(&w, &opts(false));
    let item = only(&p);
    assert_eq!(item.state, EntryState::HandledBy);
    assert!(item.actions.is_empty(), "{item:#?}");
    assert!(item
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("rosetta")));
    // override: registered, and the detail says what it shadows.
    let mut w = w;
    w.wanted.items[0].others = Others::Override;
    let p = crate::plan::plan(&w, &opts(false));
    let item = only(&p);
    assert!(matches!(&item.actions[..], [Action::Register(_)]));
    assert!(item
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("shadows rosetta")));
}

#[test]
fn qus_withdraws_its_own_entry_for_a_new_handler() {
    let s = spec("/q", "PF");
    let rosetta = spec("/rosetta", "");
    let k = kernel(&[("rosetta", &rosetta, true), ("qemu-a", &s, true)]);
    let w = world_with(
        vec![want("qemu-a", &s, id(1))],
        k,
        owned(&[("qemu-a", &s, id(1))]),
        // Its own entry and rosetta both catch it; only rosetta counts.
        &[("aarch64", &["rosetta", "qemu-a"])],
        &[],
    );
    let p = crate::plan::plan(&w, &opts(false));
    assert_eq!(only(&p).state, EntryState::HandledBy);
    assert!(matches!(&only(&p).actions[..], [Action::Unregister { .. }]));
}

#[test]
fn distro_takeover_replaces_only_the_distributions_entry_and_remembers_it() {
    let s = spec("/q", "PF");
    let theirs = spec("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "OPF");
    let mode = Mode::reconcile(Takeover::Distro);
    for (distro, expect_replace) in [(&["qemu-a"][..], true), (&[][..], false)] {
        let w = world_with(
            vec![want("qemu-a", &s, id(1))],
            kernel(&[("qemu-a", &theirs, true)]),
            owned(&[]),
            &[],
            distro,
        );
        let p = crate::plan::plan(&w, &mode);
        let item = only(&p);
        if expect_replace {
            match &item.actions[..] {
                [Action::Replace { target, .. }] => {
                    assert_eq!(target.replaced.as_ref(), Some(&theirs))
                }
                other => panic!("{other:#?}"),
            }
        } else {
            assert_eq!(item.state, EntryState::Conflict);
            assert!(item.actions.is_empty());
        }
    }
}

#[test]
fn a_failed_takeover_is_not_tried_again_until_something_changed() {
    let s = spec("/q", "PF");
    let theirs = spec("/theirs", "F");
    let mode = Mode::reconcile(Takeover::All);
    let failed = |wanted: &EntrySpec, ident: Identity, theirs: &EntrySpec| {
        let mut f = crate::model::FailedTakeovers::new();
        f.insert(
            "qemu-a".to_string(),
            crate::model::FailedTakeover {
                wanted: wanted.clone(),
                identity: ident,
                theirs: theirs.clone(),
                why: "Permission denied".into(),
            },
        );
        f
    };
    let mut w = world_with(
        vec![want("qemu-a", &s, id(1))],
        kernel(&[("qemu-a", &theirs, true)]),
        owned(&[]),
        &[],
        &[],
    );
    // Nothing changed: a conflict saying why, no write.
    w.failed_takeovers = failed(&s, id(1), &theirs);
    let p = crate::plan::plan(&w, &mode);
    assert_eq!(only(&p).state, EntryState::Conflict);
    assert!(only(&p).actions.is_empty());
    assert!(only(&p)
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("the takeover failed")));
    // The emulator, qus's spec or their entry changed: tried again.
    for changed in [
        failed(&s, id(2), &theirs),
        failed(&spec("/q", "P"), id(1), &theirs),
        failed(&s, id(1), &spec("/other", "F")),
    ] {
        w.failed_takeovers = changed;
        let p = crate::plan::plan(&w, &mode);
        assert!(
            matches!(&only(&p).actions[..], [Action::Replace { .. }]),
            "{:#?}",
            only(&p)
        );
    }
}

#[test]
fn unregister_puts_back_what_was_taken_over_if_it_can() {
    let s = spec("/q", "PF");
    let theirs = spec("/theirs", "F");
    let mut o = owned(&[("qemu-a", &s, id(1))]);
    o.get_mut("qemu-a").expect("record").replaced = Some(theirs.clone());
    let mut w = world_with(
        vec![want("qemu-a", &s, id(1))],
        kernel(&[("qemu-a", &s, true)]),
        o,
        &[],
        &[],
    );
    w.restorable = [("qemu-a".to_string(), id(1))].into();
    let p = crate::plan::plan(&w, &unregister(None));
    assert!(matches!(
        &only(&p).actions[..],
        [Action::Unregister { .. }, Action::Restore { spec, .. }] if *spec == theirs
    ));
    // Its interpreter is gone: nothing to put back.
    w.restorable.clear();
    let p = crate::plan::plan(&w, &unregister(None));
    assert!(matches!(&only(&p).actions[..], [Action::Unregister { .. }]));
    // Its interpreter fails the safety rules now: nothing is removed, and
    // the item says why.
    w.restore_refused = [("qemu-a".to_string(), "group-writable".to_string())].into();
    let p = crate::plan::plan(&w, &unregister(None));
    let item = only(&p);
    assert!(item.actions.is_empty(), "{:?}", item.actions);
    assert!(item
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("not removed") && d.contains("group-writable")));
}

/// A dormant record (qus's entry gone, the one it replaced still to put
/// back) is kept by every reconcile, carried into the next registration
/// of the name, and given back by an unregister.
#[test]
fn dormant_records_are_kept_carried_and_given_back() {
    let s = spec("/q", "PF");
    let theirs = spec("/theirs", "F");
    let mut o = owned(&[("qemu-a", &s, id(1))]);
    o.get_mut("qemu-a").expect("record").replaced = Some(theirs.clone());
    // Skipped (disabled, refused, no emulator) and no entry: nothing to do,
    // and in particular no Forget.
    let w = world_with(vec![skipped("qemu-a")], kernel(&[]), o.clone(), &[], &[]);
    let p = crate::plan::plan(&w, &opts(false));
    assert!(only(&p).actions.is_empty(), "{:?}", only(&p).actions);
    // No longer configured at all, no entry: kept too.
    let w = world_with(vec![], kernel(&[]), o.clone(), &[], &[]);
    let p = crate::plan::plan(&w, &opts(false));
    assert!(only(&p).actions.is_empty(), "{:?}", only(&p).actions);
    // Wanted again: registered with the record of what it replaced.
    let w = world_with(
        vec![want("qemu-a", &s, id(1))],
        kernel(&[]),
        o.clone(),
        &[],
        &[],
    );
    let p = crate::plan::plan(&w, &opts(false));
    assert!(matches!(
        &only(&p).actions[..],
        [Action::Register(t)] if t.replaced.as_ref() == Some(&theirs)
    ));
    // Unregister: put back, or kept with the reason.
    let mut w = world_with(vec![skipped("qemu-a")], kernel(&[]), o, &[], &[]);
    w.restorable = [("qemu-a".to_string(), id(1))].into();
    let p = crate::plan::plan(&w, &unregister(None));
    assert!(matches!(
        &only(&p).actions[..],
        [Action::Restore { spec, .. }] if *spec == theirs
    ));
    w.restorable.clear();
    let p = crate::plan::plan(&w, &unregister(None));
    let item = only(&p);
    assert!(item.actions.is_empty());
    assert!(item
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("is gone; the record stays")));
}
