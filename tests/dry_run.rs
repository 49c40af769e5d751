//! `qus register --dry-run` and `qus unregister --dry-run` against a real,
//! private binfmt_misc instance: the whole plan is shown, mounting and the
//! global switch included, and nothing changes — not the mount, not the
//! switch, not an entry, not a file in the state dir.

mod common;

use std::fs;
use std::path::Path;

use common::{stderr, stdout, Sandbox};

/// Every file under the state dir (none when it does not exist).
fn state_files(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            all.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    all.sort();
    all
}

fn plan_json(sb: &Sandbox, args: &[&str]) -> serde_json::Value {
    let out = sb.qus(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&out)))
}

fn verbs(plan: &serde_json::Value) -> Vec<String> {
    plan["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["action"].as_str().unwrap_or(""),
                a["entry"].as_str().unwrap_or("")
            )
            .trim()
            .to_string()
        })
        .collect()
}

#[test]
fn an_unmounted_instance_is_planned_as_a_mount_and_stays_unmounted() {
    let sb = Sandbox::unmounted();
    sb.install_emulator("aarch64");
    sb.install_emulator("riscv64");
    sb.search_bin("");
    let before = state_files(&sb.state());
    let out = sb.qus(&["register", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("mount binfmt_misc at {}", sb.binfmt().display())),
        "{text}"
    );
    assert!(text.contains("register qemu-aarch64 ("), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    assert_eq!(
        state_files(&sb.state()),
        before,
        "no lock, no records, no cache"
    );
    let plan = plan_json(&sb, &["register", "--dry-run", "--json"]);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["mounted"], false);
    assert_eq!(
        verbs(&plan),
        ["mount", "register qemu-aarch64", "register qemu-riscv64"]
    );
    assert_eq!(plan["kernel_writes"], 3);
    assert_eq!(state_files(&sb.state()), before);
    assert_eq!(
        sb.status()["binfmt_misc"]["mounted"],
        false,
        "still unmounted"
    );
    // Applied, the plan's writes are the pass's writes.
    let out = sb.qus_ok(&["register"]);
    assert!(out.contains("3 writes to binfmt_misc"), "{out}");
    assert_eq!(sb.entries(), ["qemu-aarch64", "qemu-riscv64"]);
    let again = plan_json(&sb, &["register", "--dry-run", "--json"]);
    assert_eq!(
        verbs(&again),
        Vec::<String>::new(),
        "a second run would do nothing"
    );
}

#[test]
fn a_switched_off_instance_is_planned_as_a_switch_on_and_stays_off() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    sb.write_inside(&sb.binfmt().join("status"), "0");
    let before = state_files(&sb.state());
    let plan = plan_json(&sb, &["register", "--dry-run", "--json"]);
    assert_eq!(plan["enabled"], false);
    assert_eq!(verbs(&plan), ["switch-on", "register qemu-aarch64"]);
    assert_eq!(plan["kernel_writes"], 2);
    let status = fs::read_to_string(sb.binfmt_outside().join("status")).expect("status");
    assert_eq!(status.trim(), "disabled", "the switch stays off");
    assert!(sb.entries().is_empty(), "nothing registered");
    assert_eq!(state_files(&sb.state()), before);
    // Forbidden by configuration: no switch-on in the plan, and a note.
    sb.search_bin("[binfmt]\nenable = false\n");
    let out = sb.qus(&["register", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("switch binfmt_misc on"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("binfmt.enable = false"),
        "{}",
        stderr(&out)
    );
    // Applied with the switch allowed: what the plan said happens.
    sb.search_bin("");
    let out = sb.qus_ok(&["register"]);
    assert!(out.contains("2 writes to binfmt_misc"), "{out}");
    let status = fs::read_to_string(sb.binfmt_outside().join("status")).expect("status");
    assert_eq!(status.trim(), "enabled");
}

#[test]
fn unregister_dry_run_lists_the_removals_and_removes_nothing() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.install_emulator("s390x");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    let records = fs::read(sb.state().join("owned.json")).expect("records");
    let out = sb.qus(&["unregister", "--all", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("remove qemu-aarch64 (qus unregister)"),
        "{}",
        stdout(&out)
    );
    let plan = plan_json(&sb, &["unregister", "s390x", "--dry-run", "--json"]);
    assert_eq!(verbs(&plan), ["remove qemu-s390x"]);
    assert_eq!(
        sb.entries(),
        ["qemu-aarch64", "qemu-s390x"],
        "both still there"
    );
    assert_eq!(
        fs::read(sb.state().join("owned.json")).expect("records"),
        records
    );
    // --json without --dry-run is a usage error, not a silent table.
    assert_eq!(sb.qus(&["register", "--json"]).status.code(), Some(2));
}
