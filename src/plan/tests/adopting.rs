//! Adopting the distribution's entry as it is: where `systemd-binfmt`
//! registered what qus would (the same emulator file, through Debian's
//! `/usr/libexec/qemu-binfmt` link, `OPF` for `PF`), a boot writes nothing
//! and a removal leaves it as it was.

use super::*;

/// A world where `qemu-a` is the distribution's, registered as `debian`,
/// and qus wants `ours`; `same_file`: both name one emulator file.
fn world(debian: &EntrySpec, ours: &EntrySpec, same_file: bool, record: Option<Owned>) -> World {
    let kernel = kernel(&[("qemu-a", debian, true)]);
    World {
        mounted: true,
        enabled: Some(true),
        match_order: kernel.keys().cloned().collect(),
        kernel,
        owned: record
            .into_iter()
            .map(|r| ("qemu-a".to_string(), r))
            .collect(),
        wanted: Wanted {
            items: vec![want("qemu-a", ours, id(1))],
        },
        distro: ["qemu-a".to_string()].into(),
        distro_same_file: if same_file {
            ["qemu-a".to_string()].into()
        } else {
            Default::default()
        },
        ..World::default()
    }
}

fn adopted_record(debian: &EntrySpec, ident: Identity) -> Owned {
    Owned {
        arch: Some("aarch64".into()),
        spec: debian.clone(),
        identity: Some(ident),
        replaced: Some(debian.clone()),
    }
}

#[test]
fn the_same_file_with_opf_is_adopted_without_a_write() {
    let debian = spec("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "OPF");
    let ours = spec("/usr/bin/qemu-aarch64-static", "PF");
    let p = super::super::plan(
        &world(&debian, &ours, true, None),
        &Mode::reconcile(Takeover::Distro),
    );
    let item = only(&p);
    assert_eq!(p.kernel_writes(), 0, "{p:#?}");
    assert_eq!(item.state, EntryState::Registered);
    assert!(item.owned);
    assert!(
        matches!(&item.actions[..], [Action::Record(t)] if t.spec == debian && t.replaced.as_ref() == Some(&debian))
    );
    assert!(item
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("adopted as it is")));
}

#[test]
fn what_differs_in_deed_is_taken_over_as_before() {
    let ours = spec("/usr/bin/qemu-aarch64-static", "PF");
    // Another file, a missing F or P, or C qus does not want: replaced.
    for (debian, same_file) in [
        (
            spec("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "OPF"),
            false,
        ),
        (
            spec("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "OP"),
            true,
        ),
        (
            spec("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "OF"),
            true,
        ),
        (
            spec("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "POCF"),
            true,
        ),
    ] {
        let p = super::super::plan(
            &world(&debian, &ours, same_file, None),
            &Mode::reconcile(Takeover::Distro),
        );
        assert!(
            matches!(&only(&p).actions[..], [Action::Replace { target, .. }] if target.spec == ours),
            "{debian:?} same file {same_file}: {p:#?}"
        );
    }
}

#[test]
fn an_adopted_entry_is_left_as_it_is_on_the_next_pass() {
    let debian = spec("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "OPF");
    let ours = spec("/usr/bin/qemu-aarch64-static", "PF");
    let w = world(&debian, &ours, true, Some(adopted_record(&debian, id(1))));
    let p = super::super::plan(&w, &Mode::reconcile(Takeover::Distro));
    assert!(only(&p).actions.is_empty(), "{p:#?}");
}

#[test]
fn an_upgraded_emulator_re_registers_the_distributions_own_line() {
    // The record says the kernel opened file 7; the emulator is file 1 now.
    let debian = spec("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "OPF");
    let ours = spec("/usr/bin/qemu-aarch64-static", "PF");
    let w = world(&debian, &ours, true, Some(adopted_record(&debian, id(7))));
    let p = super::super::plan(&w, &Mode::reconcile(Takeover::Distro));
    let item = only(&p);
    assert_eq!(item.state, EntryState::Stale);
    assert!(
        matches!(&item.actions[..], [Action::Replace { target, .. }] if target.spec == debian && target.identity == id(1)),
        "{p:#?}"
    );
}

#[test]
fn unregister_leaves_an_adopted_entry_and_forgets_it() {
    let debian = spec("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "OPF");
    let ours = spec("/usr/bin/qemu-aarch64-static", "PF");
    let w = world(&debian, &ours, true, Some(adopted_record(&debian, id(1))));
    let p = super::super::plan(&w, &Mode::Unregister { names: None });
    let item = only(&p);
    assert_eq!(p.kernel_writes(), 0, "{p:#?}");
    assert!(matches!(&item.actions[..], [Action::Forget { name }] if name == "qemu-a"));
    assert!(item
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("left in place")));
}

#[test]
fn unregister_of_a_takeover_still_puts_the_distributions_entry_back() {
    let debian = spec("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "OPF");
    let ours = spec("/usr/bin/qemu-aarch64-static", "PF");
    let mut w = world(
        &ours,
        &ours,
        false,
        Some(Owned {
            arch: Some("aarch64".into()),
            spec: ours.clone(),
            identity: Some(id(1)),
            replaced: Some(debian.clone()),
        }),
    );
    w.restorable = [("qemu-a".to_string(), id(1))].into();
    let p = super::super::plan(&w, &Mode::Unregister { names: None });
    assert!(
        matches!(&only(&p).actions[..], [Action::Unregister { .. }, Action::Restore { spec, .. }] if *spec == debian),
        "{p:#?}"
    );
}

/// Debian 12's own lines (its binfmt.d), whose masks differ from
/// upstream's in bits no Linux program sets: adopted all the same, since
/// both catch the arch's executables and PIE programs.
#[test]
fn debians_own_masks_are_adopted_where_they_catch_the_same_programs() {
    let debian_lines = [
        (
            "s390x",
            r":qemu-s390x:M::\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16:\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff:/usr/libexec/qemu-binfmt/s390x-binfmt-P:OPF",
        ),
        (
            "alpha",
            r":qemu-alpha:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x26\x90:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/libexec/qemu-binfmt/alpha-binfmt-P:OPF",
        ),
        (
            "mips",
            r":qemu-mips:M::\x7f\x45\x4c\x46\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20:/usr/libexec/qemu-binfmt/mips-binfmt-P:OPF",
        ),
    ];
    for (arch, line) in debian_lines {
        let (name, debian) =
            crate::binfmt::entry::parse_register_line(line).expect("Debian's line parses");
        let a = crate::arch::find(arch).expect("in the table");
        let ours = EntrySpec {
            matcher: Matcher::Magic {
                offset: 0,
                magic: a.magic.to_vec(),
                mask: Some(a.mask.to_vec()),
            },
            interpreter: PathBuf::from(format!("/usr/bin/qemu-{arch}-static")),
            flags: Flags::parse("PF").expect("flags"),
        };
        assert!(
            !debian.matcher.equivalent(&ours.matcher),
            "{arch}: the masks do differ"
        );
        let kernel = kernel(&[(&name, &debian, true)]);
        let w = World {
            mounted: true,
            enabled: Some(true),
            match_order: kernel.keys().cloned().collect(),
            kernel,
            wanted: Wanted {
                items: vec![Want {
                    arch: Some(arch.into()),
                    ..want(&name, &ours, id(1))
                }],
            },
            distro: [name.clone()].into(),
            distro_same_file: [name.clone()].into(),
            ..World::default()
        };
        let p = super::super::plan(&w, &Mode::reconcile(Takeover::Distro));
        assert_eq!(p.kernel_writes(), 0, "{arch}: {p:#?}");
        assert_eq!(only(&p).state, EntryState::Registered, "{arch}");
    }
}

#[test]
fn after_a_flush_an_adopted_entry_goes_back_as_the_distributions_line() {
    let debian = spec("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "OPF");
    let ours = spec("/usr/bin/qemu-aarch64-static", "PF");
    let mut w = world(&debian, &ours, false, Some(adopted_record(&debian, id(1))));
    w.kernel.clear();
    w.match_order.clear();
    w.restorable = [("qemu-a".to_string(), id(1))].into();
    let p = super::super::plan(&w, &Mode::reconcile(Takeover::Distro));
    assert!(
        matches!(&only(&p).actions[..], [Action::Register(t)] if t.spec == debian && t.replaced.as_ref() == Some(&debian)),
        "{p:#?}"
    );
    // Not when the line's interpreter is another file than the one qus
    // wants now, or is gone: then qus's own, which gives the
    // distribution's back when qus unregisters (as after a takeover).
    for line_file in [Some(id(7)), None] {
        let mut w = world(&debian, &ours, false, Some(adopted_record(&debian, id(1))));
        w.kernel.clear();
        w.match_order.clear();
        if let Some(file) = line_file {
            w.restorable = [("qemu-a".to_string(), file)].into();
        }
        let p = super::super::plan(&w, &Mode::reconcile(Takeover::Distro));
        assert!(
            matches!(&only(&p).actions[..], [Action::Register(t)] if t.spec == ours && t.replaced.as_ref() == Some(&debian)),
            "{p:#?}"
        );
    }
}

/// A newer emulator qus had switched an adopted entry to (a QEMU channel
/// package) goes away: the distribution's line goes back, adopted as it
/// is, not qus's own line for the distribution's emulator; the machine is
/// as it was before the package.
#[test]
fn when_the_newer_emulator_goes_the_distributions_line_comes_back() {
    let debian = spec("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "OPF");
    let channel = spec("/usr/lib/qus/qemu/11/qemu-aarch64", "PF");
    let ours = spec("/usr/bin/qemu-aarch64-static", "PF");
    // In the kernel: qus's entry for the channel's emulator, recorded as
    // replacing the distribution's line.
    let record = Owned {
        arch: Some("aarch64".into()),
        spec: channel.clone(),
        replaced: Some(debian.clone()),
        identity: Some(id(11)),
    };
    let mut w = world(&channel, &ours, false, Some(record));
    w.restorable = [("qemu-a".to_string(), id(1))].into();
    let p = super::super::plan(&w, &Mode::reconcile(Takeover::Distro));
    assert!(
        matches!(&only(&p).actions[..], [Action::Replace { target: t, .. }] if t.spec == debian && t.replaced.as_ref() == Some(&debian)),
        "{p:#?}"
    );
    // The line's interpreter is another file: qus's own line.
    w.restorable = [("qemu-a".to_string(), id(7))].into();
    let p = super::super::plan(&w, &Mode::reconcile(Takeover::Distro));
    assert!(
        matches!(&only(&p).actions[..], [Action::Replace { target: t, .. }] if t.spec == ours && t.replaced.as_ref() == Some(&debian)),
        "{p:#?}"
    );
}
