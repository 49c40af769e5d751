//! qus started as `binfmt` answers tonistiigi/binfmt's command line (what
//! docker/setup-qemu-action runs in the image it is given), in a private
//! binfmt_misc instance with the real qus and real emulators.

mod common;

use std::os::unix::fs::symlink;

use common::*;

fn binfmt(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    // (sb.path()/binfmt is the binfmt_misc mount point.)
    let dir = sb.path().join("tools");
    let link = dir.join("binfmt");
    if !link.exists() {
        std::fs::create_dir_all(&dir).expect("mkdir tools");
        symlink(qus_bin(), &link).expect("symlink binfmt -> qus");
    }
    sb.command(&link)
        .env("QUS_STATE_DIR", sb.state())
        .env("QUS_CONFIG_DIRS", sb.etc())
        .arg("--mount")
        .arg(sb.binfmt())
        .args(args)
        .output()
        .expect("run binfmt")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| {
        panic!(
            "stdout is not the status JSON ({e}): {:?} / {}",
            stdout(out),
            stderr(out)
        )
    })
}

#[test]
fn setup_qemu_actions_sequence_works_against_qus_as_binfmt() {
    let sb = Sandbox::new();
    sb.search_bin("");
    sb.install_emulator("aarch64");
    sb.install_emulator("riscv64");
    // Another tool's entry: --uninstall qemu-* leaves it, and says so.
    let riscv = require_qemu("riscv64");
    sb.register_raw(&format!(
        ":qemu-riscv64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xf3\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:{}:F",
        riscv.display()
    ));

    let v = binfmt(&sb, &["--version"]);
    assert!(v.status.success(), "{}", stderr(&v));
    assert!(stderr(&v).starts_with("binfmt/qus-"), "{}", stderr(&v));
    assert!(
        stdout(&v).is_empty(),
        "--version printed on stdout: {}",
        stdout(&v)
    );

    let reset = binfmt(&sb, &["--uninstall", "qemu-*"]);
    assert!(reset.status.success());
    assert!(
        stderr(&reset).contains("uninstalling: qemu-riscv64 left in place: another tool"),
        "{}",
        stderr(&reset)
    );
    assert!(
        sb.entry("qemu-riscv64").is_some(),
        "another tool's entry was removed"
    );

    let install = binfmt(&sb, &["--install", "arm64,linux/riscv64,no-such"]);
    assert!(
        install.status.success(),
        "exit 0 even when one fails, as tonistiigi's"
    );
    let err = stderr(&install);
    assert!(err.contains("installing: arm64 OK"), "{err}");
    assert!(err.contains("installing: linux/riscv64 OK"), "{err}");
    assert!(
        err.contains("installing: no-such unsupported architecture: no-such"),
        "{err}"
    );
    assert!(err.contains("not tonistiigi/binfmt's CF"), "{err}");
    let entry = sb.entry("qemu-aarch64").expect("qemu-aarch64 registered");
    assert!(entry.contains("flags: PF"), "{entry}");

    let status = binfmt(&sb, &[]);
    assert!(stderr(&status).is_empty(), "stderr: {}", stderr(&status));
    let j = json(&status);
    let supported: Vec<&str> = j["supported"]
        .as_array()
        .expect("supported")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert_eq!(supported.first(), Some(&"linux/amd64"), "{j}");
    assert!(supported.contains(&"linux/arm64"), "{j}");
    assert!(supported.contains(&"linux/riscv64"), "{j}");
    let emulators = j["emulators"].as_array().expect("emulators");
    assert!(emulators.iter().any(|e| e == "qemu-aarch64"), "{j}");
    // Field order as tonistiigi prints it.
    assert!(stdout(&status).find("supported") < stdout(&status).find("emulators"));
    let ran = sb.run_program(
        "arm64-program",
        qus::probe::find("aarch64").expect("probe").program,
    );
    assert_eq!(stdout(&ran), "qus-probe aarch64\n");

    // Uninstalling qus's own entries removes them; the other tool's stays.
    let un = binfmt(&sb, &["--uninstall", "arm64"]);
    assert!(
        stderr(&un).contains("uninstalling: qemu-aarch64 OK"),
        "{}",
        stderr(&un)
    );
    assert!(sb.entry("qemu-aarch64").is_none());
    assert!(sb.entry("qemu-riscv64").is_some());
    // The install took qemu-riscv64 over: uninstalling it puts the other
    // tool's entry back, and says so rather than a bare OK.
    let un = binfmt(&sb, &["--uninstall", "riscv64"]);
    assert!(
        stderr(&un).contains("uninstalling: qemu-riscv64 OK: qus's entry removed, and the entry it had replaced is back"),
        "{}",
        stderr(&un)
    );
    let back = sb
        .entry("qemu-riscv64")
        .expect("the other tool's entry is back");
    assert!(back.contains("flags: F"), "{back}");
}

#[test]
fn an_unknown_flag_exits_2_with_gos_message() {
    let sb = Sandbox::new();
    let out = binfmt(&sb, &["--reset"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("flag provided but not defined: -reset\nUsage of binfmt:"),
        "{}",
        stderr(&out)
    );
}

/// qus with multiarch/qemu-user-static's arguments, as its image runs them
/// (`docker run --rm --privileged IMAGE --reset -p yes`): qus's common
/// options come from the environment only, as in the image.
fn multiarch(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    sb.command(qus_bin())
        .env("QUS_BINFMT_MISC", sb.binfmt())
        .env("QUS_STATE_DIR", sb.state())
        .env("QUS_CONFIG_DIRS", sb.etc())
        .env("QUS_HOST_ARCH", "x86_64")
        .args(args)
        .output()
        .expect("run qus --reset")
}

#[test]
fn multiarchs_reset_line_registers_and_keeps_what_it_cannot_replace() {
    let sb = Sandbox::new();
    sb.search_bin("");
    sb.install_emulator("aarch64");
    sb.install_emulator("riscv64");
    // Two other tools' entries: a qemu-aarch64 qus has an emulator for
    // (replaced, and put back later), and a qemu-sparc it has none for
    // (multiarch's --reset would delete it; qus leaves it and says so).
    let other = require_qemu("riscv64");
    let aarch64_magic = "\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff";
    sb.register_raw(&format!(
        ":qemu-aarch64:M::{aarch64_magic}:{}:F",
        other.display()
    ));
    sb.register_raw(&format!(
        ":qemu-sparc:M::\\x7fELF\\x01\\x02\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x02:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff:{}:F",
        other.display()
    ));
    let before_aarch64 = sb.entry("qemu-aarch64").expect("other tool's entry");

    let out = multiarch(&sb, &["--reset", "-p", "yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // stdout: qemu-binfmt-conf.sh's line per arch, nothing else.
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    // The sandbox's binfmt_misc is a user namespace's own: each line says so.
    let want_aarch64 = format!(
        "Setting {} as binfmt interpreter for aarch64 (in this user namespace's own binfmt_misc, not the host's)",
        sb.bin().join("qemu-aarch64-static").display()
    );
    assert!(lines.contains(&want_aarch64), "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("Setting ") && l.contains(" as binfmt interpreter for ")),
        "{lines:?}"
    );
    assert!(
        stderr(&out).contains("left qemu-sparc in place"),
        "{}",
        stderr(&out)
    );
    let aarch64 = sb.entry("qemu-aarch64").expect("qemu-aarch64");
    assert!(
        aarch64.contains("qemu-aarch64-static") && aarch64.contains("flags: PF"),
        "{aarch64}"
    );
    assert!(sb.entry("qemu-sparc").is_some(), "qemu-sparc was removed");
    // A real aarch64 program runs through the entry.
    let ran = sb.run_program(
        "probe-aarch64",
        qus::probe::find("aarch64").expect("probe").program,
    );
    assert_eq!(stdout(&ran).trim(), "qus-probe aarch64", "{}", stderr(&ran));

    // -c yes is honoured, with the warning; a bad value changes nothing.
    let bad = multiarch(&sb, &["--reset", "-c", "maybe"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("-c: \"maybe\" is not yes or no"));
    assert_eq!(sb.entry("qemu-aarch64").as_deref(), Some(aarch64.as_str()));
    let c = multiarch(&sb, &["--reset", "-p", "yes", "-c", "yes"]);
    assert!(c.status.success(), "{}", stderr(&c));
    assert!(stderr(&c).contains("C, as -c yes asks"), "{}", stderr(&c));
    let with_c = sb.entry("qemu-aarch64").expect("qemu-aarch64");
    assert!(with_c.contains("flags: POCF"), "{with_c}");

    // The replaced entry comes back as it was.
    let un = sb.qus(&["unregister", "--all"]);
    assert!(un.status.success(), "{}", stderr(&un));
    assert_eq!(sb.entry("qemu-aarch64"), Some(before_aarch64));
}

/// `docker run --rm --privileged IMAGE test`: a container's /proc has no
/// binfmt_misc mounted, though the kernel's entries are there. qus test
/// mounts it to test what the kernel has, instead of reporting every arch
/// "not registered".
#[test]
fn qus_test_mounts_binfmt_misc_where_a_container_has_none() {
    let sb = Sandbox::new();
    sb.search_bin("");
    sb.install_emulator("aarch64");
    assert!(sb.qus(&["register", "aarch64"]).status.success());
    // Another mount keeps the instance (as the host's, or a rootless
    // engine's namespace, does); the one qus uses goes.
    let keep = sb.path().join("keep");
    std::fs::create_dir_all(&keep).expect("mkdir keep");
    let out = sb
        .command("sh")
        .arg("-c")
        .arg(format!(
            "mount -t binfmt_misc binfmt_misc {} && umount {}",
            keep.display(),
            sb.binfmt().display()
        ))
        .output()
        .expect("sh");
    assert!(out.status.success(), "{}", stderr(&out));
    let test = sb.qus(&["test", "aarch64"]);
    assert!(test.status.success(), "{}{}", stdout(&test), stderr(&test));
    assert!(stdout(&test).contains("1 pass"), "{}", stdout(&test));
}

/// Safety round four, point 9: the JSON listed a platform as supported
/// when its entry's interpreter no longer existed. As tonistiigi's runs a
/// test program per platform, a platform is supported only when its
/// probe really runs.
#[test]
fn a_platform_whose_interpreter_is_gone_is_not_supported() {
    let sb = Sandbox::new();
    let emu = sb.install_emulator("aarch64");
    sb.install_emulator("riscv64");
    sb.search_bin("");
    // Without F the kernel opens the interpreter at each exec: gone, it fails.
    sb.qus_ok(&["register", "--flags", "P"]);
    std::fs::remove_file(&emu).expect("remove the aarch64 emulator");
    assert!(sb.has_entry("qemu-aarch64"), "the entry is still there");
    let j = json(&binfmt(&sb, &[]));
    let supported: Vec<&str> = j["supported"]
        .as_array()
        .expect("supported")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(supported.contains(&"linux/riscv64"), "{supported:?}");
    assert!(!supported.contains(&"linux/arm64"), "{supported:?}");
}

/// Safety round four, point 3: each `docker run --rm` of the image starts
/// with an empty /run/qusd. qus's entries registered by an earlier
/// container are still qus's to a later one (they are exactly what it
/// registers), so setup-qemu-action's `reset` (`-uninstall 'qemu-*'`)
/// removes them instead of saying another tool registered them. A fresh
/// state dir per run, as engines give.
#[test]
fn a_later_container_with_fresh_state_recognises_qus_entries() {
    let sb = Sandbox::new();
    sb.search_bin("");
    sb.install_emulator("aarch64");
    let run = |args: &[&str]| {
        let state = tempfile::tempdir().expect("fresh state");
        let link = sb.path().join("tools").join("binfmt");
        if !link.exists() {
            std::fs::create_dir_all(link.parent().expect("dir")).expect("mkdir tools");
            symlink(qus_bin(), &link).expect("symlink binfmt -> qus");
        }
        sb.command(&link)
            .env("QUS_STATE_DIR", state.path().join("run-qusd"))
            .env("QUS_CONFIG_DIRS", sb.etc())
            .arg("--mount")
            .arg(sb.binfmt())
            .args(args)
            .output()
            .expect("binfmt")
    };
    let first = run(&["--install", "arm64"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(sb.has_entry("qemu-aarch64"));
    let second = run(&["--uninstall", "qemu-*"]);
    assert!(
        stderr(&second).contains("uninstalling: qemu-aarch64 OK"),
        "{}",
        stderr(&second)
    );
    assert!(!sb.has_entry("qemu-aarch64"), "qus's own entry stayed");
}
