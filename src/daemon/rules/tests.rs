//! qusd's rules fed synthetic event sequences: no inotify, no clock, no
//! kernel. Time is a base instant plus offsets.

use super::*;
use crate::binfmt::{EntrySpec, Flags, KernelEntry, Matcher};

fn at(base: Instant, ms: u64) -> Instant {
    base + Duration::from_millis(ms)
}

fn files() -> Trigger {
    Trigger {
        files: true,
        ..Trigger::default()
    }
}

fn kernel() -> Trigger {
    Trigger {
        kernel: true,
        ..Trigger::default()
    }
}

fn entry(interp: &str) -> KernelEntry {
    KernelEntry {
        enabled: true,
        spec: EntrySpec {
            matcher: Matcher::Magic {
                offset: 0,
                magic: b"\x7fELF\x02".to_vec(),
                mask: None,
            },
            interpreter: PathBuf::from(interp),
            flags: Flags::parse("F").expect("flags"),
        },
    }
}

fn entries(names: &[&str]) -> KernelEntries {
    names
        .iter()
        .map(|n| (n.to_string(), entry(&format!("/usr/bin/{n}"))))
        .collect()
}

const MAX: Duration = Duration::from_millis(100);

#[test]
fn a_burst_of_file_events_becomes_one_pass_after_the_quiet_window() {
    let t0 = Instant::now();
    let mut s = Settle::default();
    // dpkg unpacking: 35 files, 1 ms apart.
    for i in 0..35 {
        s.add(files(), MAX, at(t0, i));
    }
    // Due QUIET after the last event, not after the first.
    assert_eq!(s.deadline(), Some(at(t0, 34) + QUIET));
    let t = s.take();
    assert!(t.files && !t.kernel);
    assert_eq!(s.deadline(), None, "nothing pending after take");
}

#[test]
fn a_steady_stream_cannot_postpone_the_pass_past_max_wait() {
    let t0 = Instant::now();
    let mut s = Settle::default();
    // One event every 2 ms (under the 3 ms quiet window) for a second.
    for i in 0..500 {
        s.add(files(), MAX, at(t0, 2 * i));
        let due = s.deadline().expect("pending");
        assert!(
            due <= t0 + MAX,
            "event {i}: due {:?} after the first event, max {MAX:?}",
            due - t0
        );
    }
}

#[test]
fn a_removed_entry_is_repaired_at_once_and_later_files_keep_that() {
    let t0 = Instant::now();
    let mut s = Settle::default();
    s.add(kernel(), MAX, t0);
    assert_eq!(s.deadline(), Some(t0), "binfmt_misc events act at once");
    // A file event right after does not push the urgent repair back.
    s.add(files(), MAX, at(t0, 1));
    assert_eq!(s.deadline(), Some(t0));
    let t = s.take();
    assert!(t.kernel && t.files);
}

#[test]
fn a_retry_waits_its_delay_unless_events_come_sooner() {
    let t0 = Instant::now();
    let mut s = Settle::default();
    s.retry(Duration::from_secs(4), t0);
    assert_eq!(s.deadline(), Some(at(t0, 4000)));
    s.add(kernel(), MAX, at(t0, 10));
    assert_eq!(s.deadline(), Some(at(t0, 10)), "an event brings it sooner");
    assert!(s.take().files, "a retry is a full pass");
}

#[test]
fn a_max_wait_below_the_quiet_window_wins() {
    let t0 = Instant::now();
    let mut s = Settle::default();
    s.add(files(), Duration::from_millis(1), t0);
    assert_eq!(s.deadline(), Some(at(t0, 1)));
}

fn repair(name: &str, what: &str) -> Vec<(String, String)> {
    vec![(name.to_string(), what.to_string())]
}

#[test]
fn two_registrars_fighting_are_given_up_on_after_five_rounds() {
    let t0 = Instant::now();
    let mut c = RepairCounter::default();
    for round in 0..GIVE_UP_AFTER - 1 {
        let newly = c.count(
            &repair("qemu-aarch64", "register"),
            at(t0, 100 * u64::from(round)),
        );
        assert!(newly.is_empty(), "round {round}: not yet");
        assert!(c.given_up().is_empty());
    }
    let newly = c.count(&repair("qemu-aarch64", "register"), at(t0, 500));
    assert_eq!(newly, vec!["qemu-aarch64".to_string()]);
    assert!(c.given_up()["qemu-aarch64"].contains("5 times in a row"));
    c.clear();
    assert!(
        c.given_up().is_empty(),
        "SIGHUP or a new configuration starts over"
    );
}

#[test]
fn repairs_further_apart_than_the_window_are_no_fight() {
    let t0 = Instant::now();
    let mut c = RepairCounter::default();
    // An administrator restarting systemd-binfmt every 6 s, 20 times.
    for round in 0..20u64 {
        let newly = c.count(&repair("qemu-aarch64", "register"), at(t0, 6000 * round));
        assert!(
            newly.is_empty(),
            "round {round}: repairs 6 s apart are not a fight"
        );
    }
}

#[test]
fn a_different_repair_or_a_quiet_pass_starts_the_count_again() {
    let t0 = Instant::now();
    let mut c = RepairCounter::default();
    for round in 0..4u64 {
        c.count(&repair("qemu-arm", "register"), at(t0, round));
    }
    // A pass that did not repair it: the run is broken.
    c.count(&[], at(t0, 5));
    for round in 0..4u64 {
        c.count(&repair("qemu-arm", "register"), at(t0, 10 + round));
    }
    assert!(c.given_up().is_empty());
    // Alternating repairs are not the same repair.
    for round in 0..10u64 {
        let what = if round % 2 == 0 { "register" } else { "enable" };
        c.count(&repair("qemu-riscv64", what), at(t0, 100 + round));
    }
    assert!(c.given_up().is_empty());
}

#[test]
fn a_flush_is_everything_gone_at_once() {
    let two = entries(&["python3.11", "wine"]);
    let one = entries(&["python3.11"]);
    let none = KernelEntries::new();
    let seen = BTreeSet::new();
    // Everything gone, qus owned some: a flush.
    assert!(flushed(&one, true, &none, &seen));
    // Two others gone together, qus owned none: a flush.
    assert!(flushed(&two, false, &none, &seen));
    // One other entry gone on its own, qus owning none: its removal.
    assert!(!flushed(&one, false, &none, &seen));
    // Something still there: not a flush (one entry was removed).
    assert!(!flushed(&two, true, &entries(&["wine"]), &seen));
    // Nothing of others' to put back.
    assert!(!flushed(&none, true, &none, &seen));
}

#[test]
fn a_flush_followed_by_registrations_is_still_a_flush() {
    // systemd-binfmt's restart: everything removed, then its own entries
    // registered again before qusd looks.
    let one = entries(&["wine"]);
    let distro_back = entries(&["qemu-aarch64", "qemu-s390x"]);
    let names = |n: &[&str]| {
        n.iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<String>>()
    };
    assert!(flushed(
        &one,
        true,
        &distro_back,
        &names(&["wine", "qemu-aarch64", "qemu-s390x"])
    ));
    // The other tool removed its entry alone: its removal, not a flush.
    assert!(!flushed(&one, true, &distro_back, &names(&["wine"])));
    // It is back already: nothing to put back.
    assert!(!flushed(
        &one,
        true,
        &entries(&["wine", "qemu-aarch64"]),
        &names(&["wine", "qemu-aarch64"])
    ));
    // Others' entries that never went: not a flush.
    assert!(!flushed(
        &one,
        true,
        &distro_back,
        &names(&["qemu-aarch64", "qemu-s390x"])
    ));
}

#[test]
fn a_vanished_config_dir_keeps_the_configuration_unless_asked() {
    let etc = PathBuf::from("/etc/qus.d");
    let run = PathBuf::from("/run/qus.d");
    let both = vec![etc.clone(), run.clone()];
    let why = keep_config(&both, std::slice::from_ref(&etc), false).expect("kept");
    assert!(why.contains("/run/qus.d vanished"), "{why}");
    assert_eq!(
        keep_config(&both, std::slice::from_ref(&etc), true),
        None,
        "SIGHUP reloads"
    );
    assert_eq!(
        keep_config(std::slice::from_ref(&etc), &both, false),
        None,
        "a new dir is fine"
    );
    assert_eq!(keep_config(&both, &both, false), None);
}

#[test]
fn failed_passes_back_off_doubling_to_a_minute() {
    let mut b = None;
    let mut waits = Vec::new();
    for _ in 0..9 {
        b = backoff(b, true);
        waits.push(b.expect("failed").as_secs());
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(backoff(b, false), None, "a success resets it");
    assert_eq!(backoff(None, true), Some(FIRST_RETRY));
}

#[test]
fn busy_interpreters_are_tried_again_soon_then_every_few_seconds() {
    let mut b = None;
    let mut waits = Vec::new();
    for _ in 0..7 {
        b = busy_retry(b, true);
        waits.push(b.expect("busy").as_millis());
    }
    assert_eq!(waits, [250, 500, 1000, 2000, 4000, 4000, 4000]);
    assert_eq!(busy_retry(b, false), None, "registered: no more retries");
}

#[test]
fn only_an_unchanged_kernel_after_kernel_events_is_an_echo() {
    let none = BTreeMap::new();
    let last = (true, entries(&["qemu-aarch64"]));
    let same = (true, entries(&["qemu-aarch64"]));
    assert!(is_echo(&kernel(), Some(&same), Some(&last), &none));
    // Someone else removed it, or switched binfmt_misc off.
    assert!(!is_echo(
        &kernel(),
        Some(&(true, KernelEntries::new())),
        Some(&last),
        &none
    ));
    assert!(!is_echo(
        &kernel(),
        Some(&(false, same.1.clone())),
        Some(&last),
        &none
    ));
    // Disabled by hand: same spec, not enabled.
    let mut disabled = same.1.clone();
    if let Some(e) = disabled.get_mut("qemu-aarch64") {
        e.enabled = false;
    }
    assert!(!is_echo(
        &kernel(),
        Some(&(true, disabled)),
        Some(&last),
        &none
    ));
    // A file changed too: a pass, even with the kernel as left.
    let mut both = kernel();
    both.merge(files());
    assert!(!is_echo(&both, Some(&same), Some(&last), &none));
    // No pass yet, or binfmt_misc unreadable: never an echo.
    assert!(!is_echo(&kernel(), Some(&same), None, &none));
    assert!(!is_echo(&kernel(), None, Some(&last), &none));
}

#[test]
fn what_qusd_gave_up_on_wakes_no_pass() {
    let last = (true, entries(&["qemu-aarch64", "qemu-s390x"]));
    let s390x_gone = (true, entries(&["qemu-aarch64"]));
    let switched_off = (false, last.1.clone());
    let given_up = |names: &[&str]| -> BTreeMap<String, String> {
        names
            .iter()
            .map(|n| (n.to_string(), "gave up".to_string()))
            .collect()
    };
    // A takeover war over qemu-s390x, given up: its changes wake nothing.
    assert!(is_echo(
        &kernel(),
        Some(&s390x_gone),
        Some(&last),
        &given_up(&["qemu-s390x"])
    ));
    assert!(!is_echo(
        &kernel(),
        Some(&s390x_gone),
        Some(&last),
        &given_up(&[])
    ));
    // The global switch, given up: switching it off again wakes nothing…
    let switch = given_up(&[crate::plan::SWITCH_HOLD]);
    assert!(is_echo(
        &kernel(),
        Some(&switched_off),
        Some(&last),
        &switch
    ));
    // …but anything else that changes still does.
    assert!(!is_echo(
        &kernel(),
        Some(&(false, s390x_gone.1.clone())),
        Some(&last),
        &switch
    ));
}

#[test]
fn the_global_switch_is_given_up_on_like_an_entry() {
    let mut c = RepairCounter::default();
    let t0 = Instant::now();
    let switch_on = vec![(
        crate::plan::SWITCH_HOLD.to_string(),
        "switch on".to_string(),
    )];
    let mut given = Vec::new();
    for i in 0..GIVE_UP_AFTER {
        given = c.count(&switch_on, t0 + Duration::from_millis(u64::from(i) * 10));
    }
    assert_eq!(given, vec![crate::plan::SWITCH_HOLD.to_string()]);
    assert!(
        c.given_up()[crate::plan::SWITCH_HOLD].contains("gave up switching binfmt_misc back on")
    );
}

#[test]
fn watch_targets_cover_search_path_hops_and_every_template() {
    let config = Config::default();
    let interpreters = [InterpreterPaths {
        path: PathBuf::from("/opt/emu/bin/qemu-aarch64"),
        hops: vec![
            PathBuf::from("/etc/alternatives/qemu-aarch64"),
            PathBuf::from("/opt/qemu-9/bin/qemu-aarch64"),
        ],
    }];
    let t = watch_targets(&config, &interpreters, vec![PathBuf::from("/etc/qus.d")]);
    for dir in &config.search_path.value {
        assert!(t.emulator_dirs.contains(dir), "{}", dir.display());
    }
    for dir in ["/opt/emu/bin", "/etc/alternatives", "/opt/qemu-9/bin"] {
        assert!(t.emulator_dirs.contains(&PathBuf::from(dir)), "{dir}");
    }
    assert_eq!(
        t.emulator_dirs
            .iter()
            .filter(|d| d.ends_with("alternatives"))
            .count(),
        1,
        "each directory once"
    );
    for name in ["qemu-aarch64", "qemu-riscv64-static", "qemu-s390x"] {
        assert!(t.emulator_names.contains(&OsString::from(name)), "{name}");
    }
    assert_eq!(t.config_dirs, vec![PathBuf::from("/etc/qus.d")]);
    assert_eq!(t.binfmt, config.binfmt_path.value);
}

#[test]
fn holds_are_given_up_entries_and_files_being_written() {
    let mut given_up = BTreeMap::new();
    given_up.insert("qemu-arm".to_string(), "gave up".to_string());
    let interpreters = [
        (
            "qemu-aarch64".to_string(),
            PathBuf::from("/usr/bin/qemu-aarch64-static"),
        ),
        (
            "qemu-s390x".to_string(),
            PathBuf::from("/usr/bin/qemu-s390x-static"),
        ),
    ];
    let h = holds(&given_up, &interpreters, |p| {
        p == Path::new("/usr/bin/qemu-aarch64-static")
    });
    assert_eq!(
        h.into_iter().collect::<Vec<_>>(),
        ["qemu-aarch64", "qemu-arm"].map(String::from)
    );
    // A same-named file being written elsewhere in the search path is not
    // the interpreter: it holds nothing back.
    let h = holds(&given_up, &interpreters, |p| {
        p == Path::new("/usr/local/bin/qemu-aarch64-static")
    });
    assert_eq!(h.into_iter().collect::<Vec<_>>(), ["qemu-arm"]);
}

#[test]
fn others_wiped_by_a_flush_during_a_pass_are_remembered() {
    let last = entries(&["wine"]);
    let names = |n: &[&str]| {
        n.iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<String>>()
    };
    // A flush while the pass ran: wine vanished with others; remembered.
    let kept = others_to_remember(
        &last,
        KernelEntries::new(),
        &names(&["wine", "qemu-aarch64"]),
    );
    assert!(kept.contains_key("wine"));
    // Removed on its own: forgotten, never put back.
    let kept = others_to_remember(&last, KernelEntries::new(), &names(&["wine"]));
    assert!(kept.is_empty());
    // A flush whose removals were read only after the pass began: what
    // was there before it stays the set (not the entry registered since),
    // so the flush is still seen and the other tool's entry put back.
    let kept = others_to_remember(
        &last,
        entries(&["distro-jar"]),
        &names(&["wine", "qemu-aarch64"]),
    );
    assert_eq!(kept.keys().collect::<Vec<_>>(), ["wine"]);
    assert!(flushed(
        &kept,
        true,
        &entries(&["distro-jar", "qemu-aarch64"]),
        &names(&["wine", "qemu-aarch64"])
    ));
    // What the pass saw is kept as it is.
    let kept = others_to_remember(&KernelEntries::new(), entries(&["jar"]), &names(&[]));
    assert!(kept.contains_key("jar"));
}
