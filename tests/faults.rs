//! Fault injection and hostile input, with the real kernel and binaries.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use common::{require_qemu, stderr, wait_for, NotifySocket, Sandbox, WriteWatch};

const WAIT: u64 = 15;

fn sh(sb: &Sandbox, script: &str) {
    let st = sb.command("sh").arg("-c").arg(script).status().expect("sh");
    assert!(st.success(), "{script}");
}

/// An arch's emulator on a `noexec` tmpfs in the sandbox: qus's checks
/// pass it, the kernel refuses to open it for execution under F.
fn on_noexec_mount(sb: &Sandbox, arch: &str) -> std::path::PathBuf {
    let noexec = sb.path().join("noexec");
    fs::create_dir(&noexec).expect("mkdir");
    sh(
        sb,
        &format!(
            "mount -t tmpfs -o noexec,mode=755 tmpfs '{}'",
            noexec.display()
        ),
    );
    let emulator = noexec.join(format!("qemu-{arch}-static"));
    sh(
        sb,
        &format!(
            "cp '{}' '{1}' && chmod 755 '{1}'",
            require_qemu(arch).display(),
            emulator.display()
        ),
    );
    emulator
}

/// The kernel refuses a registration qus's own checks allow: an
/// interpreter on a `noexec` mount with F (the kernel cannot open it for
/// execution). Logged, the others still registered, retried next time.
#[test]
fn kernel_refusal_is_logged_and_does_not_block_the_others() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    let arm = on_noexec_mount(&sb, "arm");
    sb.search_bin(&format!(
        "[qemu.arch.arm]\ninterpreter = \"{}\"\n",
        arm.display()
    ));
    for _ in 0..2 {
        let out = sb.qus(&["register"]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("register qemu-arm ({}): failed", arm.display())),
            "{err}"
        );
        assert!(sb.entries().contains(&"qemu-aarch64".to_string()));
        assert!(!sb.entries().contains(&"qemu-arm".to_string()));
    }
}

/// A takeover the kernel refuses (qus's interpreter on a `noexec` mount)
/// puts the other tool's entry back as it was, disabled included, and is
/// not tried again on later passes while nothing changed: the other entry
/// is not removed and re-added on every pass.
#[test]
fn a_failed_takeover_puts_a_disabled_entry_back_disabled_and_once() {
    let sb = Sandbox::new();
    let arm64 = on_noexec_mount(&sb, "aarch64");
    sb.search_bin(&format!(
        "takeover = true\n[qemu.arch.aarch64]\ninterpreter = \"{}\"\n",
        arm64.display()
    ));
    sb.register_raw(
        ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00::/bin/true:F",
    );
    sb.write_inside(&sb.binfmt().join("qemu-aarch64"), "0");
    let theirs = sb.entry("qemu-aarch64").expect("their entry");
    assert!(theirs.starts_with("disabled"), "{theirs}");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    assert_eq!(
        sb.entry("qemu-aarch64").as_deref(),
        Some(theirs.as_str()),
        "{}",
        d.log_text()
    );
    // Two more passes, each for an emulator that arrives.
    for arch in ["riscv64", "s390x"] {
        sb.install_emulator(arch);
        wait_for(15, &format!("{arch} registered"), || {
            sb.has_entry(&format!("qemu-{arch}"))
        });
    }
    d.settle(&sb);
    assert_eq!(
        sb.entry("qemu-aarch64").as_deref(),
        Some(theirs.as_str()),
        "{}",
        d.log_text()
    );
    assert_eq!(
        d.count("the takeover failed; put the other entry back"),
        1,
        "{}",
        d.log_text()
    );
    // qusd says so: a conflict, not an error retried forever.
    let status = sb.qus_ok(&["status", "--daemon"]);
    assert!(status.contains("1 conflicts"), "{status}");
}

/// State dir full: qus keeps working from the kernel's view, and a second
/// run adopts what the first registered instead of writing again.
#[test]
fn full_state_dir_costs_no_registration() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    sh(&sb, &format!(
        "mount -t tmpfs -o size=4k,mode=0700 tmpfs '{0}' && (dd if=/dev/zero of='{0}/fill' bs=1k count=64 2>/dev/null; true)",
        sb.state().display()
    ));
    let out = sb.qus(&["register"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot save ownership records"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
    let mut watch = WriteWatch::new(&sb.binfmt_outside());
    sb.qus_ok(&["register"]);
    assert_eq!(
        watch.drain(),
        Vec::<String>::new(),
        "wrote again without records"
    );
}

/// The ownership records corrupted or deleted under a running qusd:
/// recovered, and foreign entries are not touched.
#[test]
fn corrupt_or_deleted_state_is_recovered() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.install_emulator("s390x");
    sb.search_bin("");
    sb.register_raw(":jar:E::jar::/bin/sh:");
    let jar = sb.entry("jar").expect("jar");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    fs::write(sb.state().join("owned.json"), "{ not json").expect("corrupt");
    sb.write_inside(&sb.binfmt().join("qemu-aarch64"), "-1");
    wait_for(WAIT, "aarch64 restored", || sb.has_entry("qemu-aarch64"));
    wait_for(WAIT, "corruption logged", || {
        d.count("corrupt, starting afresh") >= 1
    });
    fs::remove_file(sb.state().join("owned.json")).expect("rm");
    sb.write_inside(&sb.binfmt().join("qemu-s390x"), "-1");
    wait_for(WAIT, "s390x restored", || sb.has_entry("qemu-s390x"));
    assert_eq!(sb.entry("jar").as_deref(), Some(jar.as_str()));
    // The records are saved right after the kernel write: wait for them.
    let owned = sb.state().join("owned.json");
    wait_for(WAIT, "records rewritten", || {
        fs::read_to_string(&owned).is_ok_and(|r| r.contains("qemu-s390x"))
    });
    let records = fs::read_to_string(&owned).expect("records rewritten");
    assert!(
        records.contains("qemu-s390x") && !records.contains("\"jar\""),
        "{records}"
    );
}

/// A search dir deleted under qusd (its watch is lost): entries go with
/// the emulators, and the directory is watched again once it is back.
#[test]
fn lost_watch_is_rebuilt() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    fs::remove_dir_all(sb.bin()).expect("rm -r bin");
    wait_for(WAIT, "entry removed", || !sb.has_entry("qemu-aarch64"));
    fs::create_dir(sb.bin()).expect("mkdir");
    // The directory's creation is handled (and watched) before the emulator comes.
    d.settle(&sb);
    sb.install_emulator("aarch64");
    wait_for(WAIT, "registered again", || sb.has_entry("qemu-aarch64"));
}

/// binfmt_misc switched off globally with `binfmt.enable = false`: qusd
/// reports it and leaves it off.
#[test]
fn global_disable_is_only_reported_when_not_configured() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("[binfmt]\nenable = false\n");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    sb.write_inside(&sb.binfmt().join("status"), "0");
    wait_for(WAIT, "reported", || {
        d.count("binfmt_misc is disabled globally") >= 1
    });
    d.settle(&sb);
    let st = fs::read_to_string(sb.binfmt_outside().join("status")).expect("status");
    assert_eq!(st.trim(), "disabled");
}

/// Two `qus register` runs and qusd at once, over and over: serialised by
/// the lock, never an error, a duplicate or a missing entry.
#[test]
fn concurrent_registers_and_daemon_are_serialised() {
    let sb = Sandbox::new();
    for a in ["aarch64", "arm", "s390x", "riscv64"] {
        sb.install_emulator(a);
    }
    sb.search_bin("");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    for round in 0..8 {
        sb.write_inside(&sb.binfmt().join("status"), "-1");
        let kids: Vec<_> = (0..2)
            .map(|_| {
                sb.tool(common::QUS)
                    .arg("register")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("qus")
            })
            .collect();
        for k in kids {
            let out = k.wait_with_output().expect("wait");
            assert!(out.status.success(), "round {round}: {}", stderr(&out));
        }
        wait_for(WAIT, "all four back", || sb.entries().len() == 4);
    }
    d.settle(&sb);
    assert_eq!(
        sb.entries(),
        ["qemu-aarch64", "qemu-arm", "qemu-riscv64", "qemu-s390x"]
    );
    assert_eq!(d.count("failed"), 0, "{}", d.log_text());
}

/// A symlink planted by a non-root user in a sticky, world-writable
/// directory must not make qus register what it points to.
#[test]
fn symlink_swap_in_a_world_writable_dir_is_refused() {
    // Host uids mapped as they are: a user's file stays that user's.
    let sb = Sandbox::with_host_ids();
    let tmp = sb.path().join("sticky");
    fs::create_dir(&tmp).expect("mkdir");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).expect("chmod");
    let link = tmp.join("qemu-aarch64-static");
    std::os::unix::fs::symlink(require_qemu("aarch64"), &link).expect("symlink");
    let st = std::process::Command::new("chown")
        .args(["-h", "12345:12345"])
        .arg(&link)
        .status()
        .expect("chown");
    assert!(st.success());
    sb.write_config(
        "10.toml",
        &format!("[qemu]\nsearch_path = [\"{}\"]\n", tmp.display()),
    );
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("symlink owned by uid"),
        "{}",
        stderr(&out)
    );
    assert!(sb.entries().is_empty());
}

/// A drop-in owned by a non-root user is refused with its name; nothing
/// is registered or removed because of it.
#[test]
fn config_owned_by_a_user_is_refused() {
    let sb = Sandbox::with_host_ids();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    let evil = sb.write_config("90-user.toml", "[qemu]\nexclude = [\"aarch64\"]\n");
    let st = std::process::Command::new("chown")
        .args(["12345:12345"])
        .arg(&evil)
        .status()
        .expect("chown");
    assert!(st.success());
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("{}: refused: owned by uid", evil.display())),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
}

/// Control characters in a foreign entry's name never reach the table or
/// break the JSON.
#[test]
fn control_characters_never_corrupt_output() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    sb.register_raw(":evil\u{1b}[31mname:E::ev::/bin/sh:");
    sb.qus_ok(&["register"]);
    let table = sb.qus_ok(&["status"]);
    assert!(!table.contains('\u{1b}'), "{table:?}");
    let json = sb.qus_ok(&["status", "--json"]);
    serde_json::from_str::<serde_json::Value>(&json).expect("valid JSON");
    assert!(
        sb.entries().iter().any(|e| e.starts_with("evil")),
        "the foreign entry stays"
    );
}

/// A takeover never replaces what it cannot record first: with the state
/// dir read-only the other tool's entry is a conflict that says why; with
/// the state dir full the write-ahead record fails and the takeover is
/// dropped. Either way the other tool's entry stays exactly as it was,
/// and `qus unregister --all` loses nothing.
/// Fault injection at every write of a takeover: `qus register` taking
/// over two other tools' entries is killed (SIGKILL, by strace's syscall
/// fault injection) at its 1st, 2nd, … write, rename, unlink or sync, until
/// a run gets through. After each kill: a restart (`qus register`), then
/// `qus unregister --all`, and every foreign entry must be back byte for
/// byte. The record of what a takeover replaces is made durable before
/// the replace, so no kill point can lose one.
#[test]
fn a_takeover_killed_at_any_write_loses_no_foreign_entry() {
    common::require_tool("strace", "strace");
    const CALLS: &str = "write,pwrite64,writev,rename,renameat,renameat2,unlink,unlinkat,\
                         linkat,fsync,fdatasync";
    let theirs = [
        ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00::/bin/true:F",
        ":qemu-riscv64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xf3\\x00::/bin/false:",
    ];
    let mut kills = 0;
    for at in 1.. {
        assert!(
            at < 500,
            "qus register was still killed at its {at}th write"
        );
        let sb = Sandbox::new();
        sb.install_emulator("aarch64");
        sb.install_emulator("riscv64");
        sb.search_bin("takeover = true\n");
        for line in theirs {
            sb.register_raw(line);
        }
        let before = [sb.entry("qemu-aarch64"), sb.entry("qemu-riscv64")];
        assert!(before.iter().all(Option::is_some), "their entries");
        let inject = format!("inject={CALLS}:signal=KILL:when={at}");
        let out = sb
            .tool_under(
                &[
                    "strace",
                    "-f",
                    "-qq",
                    "-o",
                    "/dev/null",
                    "-e",
                    &format!("trace={CALLS}"),
                    "-e",
                    &inject,
                ],
                &common::qus_bin(),
                "x86_64",
            )
            .arg("register")
            .output()
            .expect("run strace qus register");
        let killed = out.status.code() != Some(0);
        if killed {
            kills += 1;
            // The restart: a new qus on what the killed one left.
            let restart = sb.qus(&["register"]);
            assert_eq!(
                restart.status.code(),
                Some(0),
                "restart after a kill at write {at}: {}",
                stderr(&restart)
            );
        } else {
            assert!(
                sb.entry("qemu-aarch64")
                    .is_some_and(|e| e.contains("qemu-aarch64-static")),
                "the takeover ran"
            );
        }
        sb.qus(&["unregister", "--all"]);
        let after = [sb.entry("qemu-aarch64"), sb.entry("qemu-riscv64")];
        assert_eq!(
            after, before,
            "killed at write {at}: a foreign entry was lost or changed"
        );
        if !killed {
            break;
        }
    }
    // Not vacuous: the takeover has many writes, each a kill point.
    assert!(kills >= 5, "only {kills} kill points: is strace injecting?");
    eprintln!("killed at each of {kills} writes; every foreign entry came back each time");
}

#[test]
fn takeovers_never_replace_what_cannot_be_recorded() {
    for full in [false, true] {
        let sb = Sandbox::new();
        sb.install_emulator("aarch64");
        sb.search_bin("takeover = true\n");
        sb.register_raw(
            ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00::/bin/true:F",
        );
        let theirs = sb.entry("qemu-aarch64").expect("their entry");
        if full {
            sh(&sb, &format!(
                "mount -t tmpfs -o size=4k,mode=0700 tmpfs '{0}' && (dd if=/dev/zero of='{0}/fill' bs=1k count=64 2>/dev/null; true)",
                sb.state().display()
            ));
        } else {
            sh(
                &sb,
                &format!(
                    "mount --bind '{0}' '{0}' && mount -o remount,bind,ro '{0}'",
                    sb.state().display()
                ),
            );
        }
        let out = sb.qus(&["register"]);
        let err = stderr(&out);
        assert!(
            err.contains("could not be recorded"),
            "full={full}: no word on the refused takeover: {err}"
        );
        assert_eq!(
            sb.entry("qemu-aarch64").as_deref(),
            Some(theirs.as_str()),
            "full={full}: their entry was replaced without a record: {err}"
        );
        sb.qus(&["unregister", "--all"]);
        assert_eq!(sb.entry("qemu-aarch64").as_deref(), Some(theirs.as_str()));
    }
}
