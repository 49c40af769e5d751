//! The real `qus` binary against a real, private binfmt_misc instance.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{stderr, Sandbox, WriteWatch};

#[test]
fn registers_every_emulator_found_and_nothing_else() {
    let sb = Sandbox::new();
    for arch in ["aarch64", "riscv64", "s390x"] {
        sb.install_emulator(arch);
    }
    sb.search_bin("");
    let out = sb.qus_ok(&["register"]);
    assert!(out.contains("3 writes"), "{out}");
    assert_eq!(sb.entries(), ["qemu-aarch64", "qemu-riscv64", "qemu-s390x"]);
    let entry = sb.entry("qemu-aarch64").expect("entry");
    assert!(entry.starts_with("enabled\n"), "{entry}");
    assert!(
        entry.contains(&format!(
            "interpreter {}/qemu-aarch64-static",
            sb.bin().display()
        )),
        "{entry}"
    );
    assert!(entry.contains("flags: PF"), "{entry}");
    assert!(
        entry.contains("mask ffffffffffffff00fffffffffffffffffeffffff"),
        "{entry}"
    );
    assert_eq!(sb.state_of("qemu-aarch64"), "registered");
    assert_eq!(sb.state_of("qemu-arm"), "no-interpreter");
    assert_eq!(sb.state_of("qemu-x86_64"), "native");
    assert_eq!(sb.state_of("qemu-i386"), "native");
}

#[test]
fn second_register_writes_nothing() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.install_emulator("arm");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    let mut watch = WriteWatch::new(&sb.binfmt_outside());
    // The watch itself works: a write we make is seen.
    sb.write_inside(&sb.binfmt().join("qemu-arm"), "0");
    assert!(
        !watch.drain().is_empty(),
        "inotify on the instance sees writes"
    );
    sb.write_inside(&sb.binfmt().join("qemu-arm"), "1");
    watch.drain();

    let out = sb.qus_ok(&["register"]);
    assert!(out.contains(" 0 writes"), "{out}");
    assert_eq!(
        watch.drain(),
        Vec::<String>::new(),
        "second run wrote to binfmt_misc"
    );
    // Also when the ownership records are lost: identical entries are adopted.
    fs::remove_file(sb.state().join("owned.json")).expect("rm state");
    sb.qus_ok(&["register"]);
    assert_eq!(
        watch.drain(),
        Vec::<String>::new(),
        "adoption wrote to binfmt_misc"
    );
    let s = sb.status();
    let owned = s["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["name"] == "qemu-aarch64")
        .expect("aarch64")["owned"]
        .clone();
    assert_eq!(owned, true);
}

#[test]
fn targets_and_command_line_limit_the_arches() {
    let sb = Sandbox::new();
    for arch in ["aarch64", "riscv64", "s390x"] {
        sb.install_emulator(arch);
    }
    sb.search_bin("targets = [\"aarch64\"]\n");
    sb.qus_ok(&["register"]);
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
    assert_eq!(sb.state_of("qemu-riscv64"), "excluded");
    // Naming arches on the command line registers just those.
    sb.qus_ok(&["register", "s390x"]);
    assert_eq!(sb.entries(), ["qemu-aarch64", "qemu-s390x"]);
    // An unknown arch is a clear usage error.
    let out = sb.qus(&["register", "vax"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown arch \"vax\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn exclude_keeps_an_arch_out_and_removes_what_qus_registered() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.install_emulator("riscv64");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    assert_eq!(sb.entries(), ["qemu-aarch64", "qemu-riscv64"]);
    sb.search_bin("exclude = [\"riscv64\"]\n");
    sb.qus_ok(&["register"]);
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
    assert_eq!(sb.state_of("qemu-riscv64"), "excluded");
}

#[test]
fn per_arch_override_sets_interpreter_and_flags() {
    let sb = Sandbox::new();
    let emu = sb.install_emulator("aarch64");
    let custom = sb.bin().join("my-aarch64");
    fs::rename(&emu, &custom).expect("rename");
    sb.search_bin(&format!(
        "flags = \"P\"\n[qemu.arch.aarch64]\ninterpreter = \"{}\"\nflags = \"OCF\"\n",
        custom.display()
    ));
    sb.qus_ok(&["register"]);
    let entry = sb.entry("qemu-aarch64").expect("entry");
    assert!(
        entry.contains(&format!("interpreter {}", custom.display())),
        "{entry}"
    );
    assert!(entry.contains("flags: OCF"), "{entry}");
    // Registered C as OC: a second run still sees it as identical.
    let out = sb.qus_ok(&["register"]);
    assert!(out.contains(" 0 writes"), "{out}");
    // --flags applies to this run's qemu entries.
    sb.qus_ok(&["register", "aarch64", "--flags", "F"]);
    assert!(sb
        .entry("qemu-aarch64")
        .expect("entry")
        .contains("flags: F\n"));
}

#[test]
fn custom_entries_by_magic_and_by_extension() {
    let sb = Sandbox::new();
    sb.search_bin("[entry.qus-magic]\nmagic = \"#!qus\\\\x00\"\nmask = \"\\\\xff\\\\xff\\\\xff\\\\xff\\\\xff\\\\xff\"\noffset = 2\ninterpreter = \"/bin/sh\"\n\
         [entry.qus-ext]\ntype = \"extension\"\nextension = \"qusx\"\ninterpreter = \"/bin/sh\"\nflags = \"P\"\n",
    );
    sb.qus_ok(&["register"]);
    assert_eq!(sb.entries(), ["qus-ext", "qus-magic"]);
    let m = sb.entry("qus-magic").expect("magic entry");
    assert!(m.contains("offset 2\nmagic 2321717573\x30\x30"), "{m}");
    assert!(m.contains("mask ffffffffffff"), "{m}");
    let e = sb.entry("qus-ext").expect("ext entry");
    assert!(e.contains("extension .qusx"), "{e}");
    assert!(e.contains("flags: P"), "{e}");
    // The extension entry really runs its interpreter through the kernel.
    let script = sb.path().join("hello.qusx");
    fs::write(&script, "echo custom-entry-ran\n").expect("script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = sb.command(&script).output().expect("exec");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "custom-entry-ran\n");
    // Disabling it in a later drop-in removes it.
    sb.write_config("20-off.toml", "[entry.qus-ext]\nenabled = false\n");
    sb.qus_ok(&["register"]);
    assert_eq!(sb.entries(), ["qus-magic"]);
}

#[test]
fn unregister_removes_only_owned_entries() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.install_emulator("s390x");
    sb.search_bin("");
    sb.register_raw(":python-test:E::pyq::/bin/sh:");
    sb.qus_ok(&["register"]);
    assert_eq!(sb.entries(), ["python-test", "qemu-aarch64", "qemu-s390x"]);
    sb.qus_ok(&["unregister", "aarch64"]);
    assert_eq!(sb.entries(), ["python-test", "qemu-s390x"]);
    let out = sb.qus(&["unregister"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no arch and no --all is a usage error"
    );
    sb.qus_ok(&["unregister", "--all"]);
    assert_eq!(sb.entries(), ["python-test"]);
}

#[test]
fn foreign_entries_are_left_alone_and_conflicts_reported() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("takeover = false\n");
    // Someone else's entries: an unrelated one, and a same-named different one
    // (tonistiigi-style: its own interpreter, flags CF).
    sb.register_raw(":jar:E::jar::/bin/sh:");
    // (Only aarch64 headers: an entry matching native ELF files would catch qus itself.)
    sb.register_raw(
        ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00::/bin/sh:CF",
    );
    let before = sb.entry("qemu-aarch64").expect("foreign");
    let jar = sb.entry("jar").expect("jar");
    let mut watch = WriteWatch::new(&sb.binfmt_outside());
    sb.qus_ok(&["register"]);
    assert_eq!(watch.drain(), Vec::<String>::new());
    assert_eq!(sb.entry("qemu-aarch64").as_deref(), Some(before.as_str()));
    assert_eq!(sb.entry("jar").as_deref(), Some(jar.as_str()));
    assert_eq!(sb.state_of("qemu-aarch64"), "conflict");
    // `unregister --all` does not touch what qus does not own.
    sb.qus_ok(&["unregister", "--all"]);
    assert_eq!(sb.entries(), ["jar", "qemu-aarch64"]);
    // By default ("distro") another tool's entry stays too, with a WARN
    // naming it and the setting that changes it.
    sb.search_bin("");
    let out = sb.qus(&["register"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another tool's entry named qemu-aarch64 exists (interpreter /bin/sh")
            && err.contains("takeover = true replaces it"),
        "{err}"
    );
    assert_eq!(sb.entry("qemu-aarch64").as_deref(), Some(before.as_str()));
    // With takeover = true it is replaced; jar stays.
    sb.search_bin("takeover = true\n");
    sb.qus_ok(&["register"]);
    let now = sb.entry("qemu-aarch64").expect("ours");
    assert!(now.contains("qemu-aarch64-static"), "{now}");
    assert_eq!(sb.entry("jar").as_deref(), Some(jar.as_str()));
    // Unregistering puts back what qus took over.
    sb.qus_ok(&["unregister", "aarch64"]);
    assert_eq!(sb.entry("qemu-aarch64").as_deref(), Some(before.as_str()));
    sb.search_bin("");
    assert_eq!(sb.state_of("qemu-aarch64"), "conflict");
}

#[test]
fn bad_config_fails_with_file_and_line_and_removes_nothing() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.install_emulator("riscv64");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    let before = sb.entries();
    let cases = [
        (
            "[qemu]\n\nflags = \"PF\"\nbogus = 1\n",
            "99-bad.toml:4",
            "unknown key `bogus`",
        ),
        (
            "[qemu]\nexclude = [\"aarch64\", \"vax\"]\n",
            "99-bad.toml:2",
            "unknown arch \"vax\"",
        ),
        ("[qemu]\nflags = \"PX\"\n", "99-bad.toml:2", "unknown flag"),
        (
            "[daemon]\ndebounce_ms = \"fast\"\n",
            "99-bad.toml:2",
            "invalid type",
        ),
        (
            "[entry.x]\nmagic = \"MZ\"\nmask = \"\\\\xff\"\ninterpreter = \"/bin/sh\"\n",
            "99-bad.toml:3",
            "same length",
        ),
        ("[qemu\n", "99-bad.toml:1", ""),
    ];
    let mut watch = WriteWatch::new(&sb.binfmt_outside());
    for (text, location, reason) in cases {
        let path = sb.write_config("99-bad.toml", text);
        for args in [
            &["register"][..],
            &["config", "--check"][..],
            &["status"][..],
        ] {
            let out = sb.qus(args);
            assert_eq!(out.status.code(), Some(1), "{args:?} with {text:?}");
            let err = stderr(&out);
            assert!(err.contains(location), "{args:?}: {err:?} lacks {location}");
            assert!(err.contains(reason), "{args:?}: {err:?} lacks {reason}");
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        assert_eq!(sb.entries(), before, "an entry was lost over {text:?}");
    }
    assert_eq!(
        watch.drain(),
        Vec::<String>::new(),
        "bad config wrote to binfmt_misc"
    );
    fs::remove_file(sb.etc().join("99-bad.toml")).expect("rm");
    sb.qus_ok(&["config", "--check"]);
}

#[test]
fn insecure_interpreters_are_refused() {
    let sb = Sandbox::new();
    let emu = sb.install_emulator("aarch64");
    sb.search_bin("");
    // World-writable emulator file.
    fs::set_permissions(&emu, fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refused qemu-aarch64"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("writable by group or others"),
        "{}",
        stderr(&out)
    );
    assert!(sb.entries().is_empty());
    assert_eq!(sb.state_of("qemu-aarch64"), "refused");
    // Safe file, but in a directory others can write to (not sticky).
    fs::set_permissions(&emu, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(sb.bin(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("directory"), "{}", stderr(&out));
    assert!(sb.entries().is_empty());
    // Fixed: registered.
    fs::set_permissions(sb.bin(), fs::Permissions::from_mode(0o755)).expect("chmod");
    sb.qus_ok(&["register"]);
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
    // Made insecure later: the entry qus owns goes away.
    fs::set_permissions(&emu, fs::Permissions::from_mode(0o775)).expect("chmod");
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(sb.entries().is_empty());
}

#[test]
fn disabled_removed_and_upgraded_entries_are_repaired() {
    let sb = Sandbox::new();
    let emu = sb.install_emulator("aarch64");
    sb.install_emulator("s390x");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    sb.write_inside(&sb.binfmt().join("qemu-aarch64"), "0");
    sb.write_inside(&sb.binfmt().join("qemu-s390x"), "-1");
    assert_eq!(sb.state_of("qemu-aarch64"), "disabled");
    assert_eq!(sb.state_of("qemu-s390x"), "missing");
    sb.qus_ok(&["register"]);
    assert!(sb
        .entry("qemu-aarch64")
        .expect("entry")
        .starts_with("enabled"));
    assert!(sb.entry("qemu-s390x").is_some());
    // Upgrade under F: a new file renamed over the old one makes the entry stale.
    let new = sb.bin().join(".new");
    fs::copy(&emu, &new).expect("copy");
    fs::rename(&new, &emu).expect("rename");
    assert_eq!(sb.state_of("qemu-aarch64"), "stale");
    let mut watch = WriteWatch::new(&sb.binfmt_outside());
    let out = sb.qus_ok(&["register"]);
    assert!(
        out.contains(" 2 writes"),
        "replace = remove + register: {out}"
    );
    let events = watch.drain();
    assert!(
        events
            .iter()
            .any(|e| e.contains("DELETE") && e.ends_with("qemu-aarch64")),
        "{events:?}"
    );
    assert_eq!(sb.state_of("qemu-aarch64"), "registered");
}

#[test]
fn status_json_follows_the_documented_schema() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    let s = sb.status();
    assert_eq!(s["version"], 1);
    assert_eq!(s["host"]["machine"], "x86_64");
    assert_eq!(s["host"]["family"], "i386");
    assert_eq!(s["binfmt_misc"]["mounted"], true);
    assert_eq!(s["binfmt_misc"]["enabled"], true);
    assert_eq!(s["binfmt_misc"]["instance"], "private");
    let entries = s["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 35);
    let a = entries
        .iter()
        .find(|e| e["arch"] == "aarch64")
        .expect("aarch64");
    assert_eq!(a["name"], "qemu-aarch64");
    assert_eq!(a["state"], "registered");
    assert_eq!(a["owned"], true);
    assert_eq!(a["flags"], "PF");
    assert_eq!(a["kernel"]["enabled"], true);
    assert_eq!(s["summary"]["registered"], 1);
    // The human table names the same.
    let table = sb.qus_ok(&["status"]);
    assert!(
        table.contains("instance:    private to this user namespace"),
        "{table}"
    );
    assert!(table
        .lines()
        .any(|l| l.starts_with("qemu-aarch64") && l.contains("registered")));
}

#[test]
fn export_writes_binfmt_d_lines_the_kernel_accepts() {
    let sb = Sandbox::new();
    sb.install_emulator("riscv64");
    sb.search_bin("");
    let out_dir = sb.path().join("export");
    sb.qus_ok(&[
        "export",
        "--format",
        "binfmt.d",
        "--output",
        out_dir.to_str().expect("utf8"),
    ]);
    let line = fs::read_to_string(out_dir.join("qemu-riscv64.conf")).expect("exported");
    let line = line
        .lines()
        .find(|l| l.starts_with(':'))
        .expect("a register line");
    // Feed it to the kernel as systemd-binfmt would, and compare with ours.
    sb.register_raw(line);
    let kernel = sb.entry("qemu-riscv64").expect("registered from export");
    let mut watch = WriteWatch::new(&sb.binfmt_outside());
    sb.qus_ok(&["register"]);
    assert_eq!(
        watch.drain(),
        Vec::<String>::new(),
        "export differs from register: {kernel}"
    );
}

#[test]
fn config_shows_each_value_with_its_source() {
    let sb = Sandbox::new();
    let f = sb.write_config("50-x.toml", "[qemu]\n\nexclude = [\"arm\"]\n");
    let out = sb.qus_ok(&["config"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("exclude"))
        .expect("exclude line");
    assert!(line.contains(&format!("{}:3", f.display())), "{line}");
    let line = out
        .lines()
        .find(|l| l.starts_with("flags"))
        .expect("flags line");
    assert!(line.contains("built-in default"), "{line}");
    let line = out
        .lines()
        .find(|l| l.starts_with("path"))
        .expect("path line");
    assert!(line.contains("--binfmt-misc"), "{line}");
}

#[test]
fn masking_a_vendor_file_with_dev_null() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    let vendor = sb.path().join("vendor");
    fs::create_dir(&vendor).expect("mkdir");
    fs::write(
        vendor.join("50-vendor.toml"),
        format!(
            "[qemu]\nsearch_path = [\"{}\"]\nexclude = [\"aarch64\"]\n",
            sb.bin().display()
        ),
    )
    .expect("vendor file");
    fs::write(
        sb.etc().join("10-path.toml"),
        format!("[qemu]\nsearch_path = [\"{}\"]\n", sb.bin().display()),
    )
    .expect("etc file");
    let run = |sb: &Sandbox| {
        sb.command(common::QUS)
            .arg("--binfmt-misc")
            .arg(sb.binfmt())
            .arg("--state-dir")
            .arg(sb.state())
            .arg("--config-dir")
            .arg(&vendor)
            .arg("--config-dir")
            .arg(sb.etc())
            .arg("register")
            .status()
            .expect("qus")
    };
    assert!(run(&sb).success());
    assert!(sb.entries().is_empty(), "vendor exclude applies");
    std::os::unix::fs::symlink("/dev/null", sb.etc().join("50-vendor.toml")).expect("mask");
    assert!(run(&sb).success());
    assert_eq!(
        sb.entries(),
        ["qemu-aarch64"],
        "masked vendor file no longer applies"
    );
}

#[test]
fn mounts_binfmt_misc_when_allowed_and_says_so_when_not() {
    let sb = Sandbox::unmounted();
    sb.install_emulator("aarch64");
    sb.search_bin("[binfmt]\nmount = false\n");
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not mounted"), "{}", stderr(&out));
    let s = sb.status();
    assert_eq!(s["binfmt_misc"]["mounted"], false);
    assert_eq!(sb.state_of("qemu-aarch64"), "missing");
    sb.search_bin("");
    let out = sb.qus(&["register"]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("mounted binfmt_misc at"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
    assert_eq!(sb.status()["binfmt_misc"]["mounted"], true);
}

/// One broken drop-in does not blind the commands that only read:
/// `status`, `test` and `which` show the kernel's entries (with every
/// drop-in but the broken one, and say so) and the error at its file and
/// line, and exit 1; commands that write still refuse and change nothing.
#[test]
fn a_broken_drop_in_does_not_blind_read_only_commands() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    let bad = sb.write_config("99-bad.toml", "[qemu]\nflags = \"PX\"\n");
    let bad = bad.display().to_string();
    let check = |out: &std::process::Output, what: &str| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains(&format!("{bad}:2")),
            "{what} lacks file:line: {err}"
        );
        assert!(
            err.contains(&format!("the configuration without {bad}")),
            "{what} does not say which configuration it used: {err}"
        );
    };
    let out = sb.qus(&["status"]);
    check(&out, "status");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("qemu-aarch64 ") && l.contains("registered")),
        "{table}"
    );
    let out = sb.qus(&["test", "aarch64", "--json"]);
    check(&out, "test");
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(t["results"][0]["result"], "pass", "{t:#}");
    let probe = sb.path().join("probe-aarch64");
    fs::write(&probe, qus::probe::find("aarch64").expect("probe").program).expect("probe");
    let out = sb.qus(&["which", &probe.display().to_string()]);
    check(&out, "which");
    assert!(String::from_utf8_lossy(&out.stdout).contains("qemu-aarch64"));
    for args in [&["unregister", "--all"][..], &["register"][..]] {
        let out = sb.qus(args);
        assert_eq!(out.status.code(), Some(1), "{args:?} must refuse");
        assert!(
            !stderr(&out).contains("showing what the kernel has"),
            "{args:?}"
        );
    }
    assert_eq!(sb.entries(), ["qemu-aarch64"], "a write got through");
}

/// A custom entry whose magic matches the host's non-PIE programs
/// (`ET_EXEC` with the host's own ELF class, byte order and machine) is
/// refused, though qus's own executable (a static PIE, `ET_DYN`) does not
/// match it: registered, every such native program would go to the
/// interpreter ("Invalid ELF image"). `catch_host_programs` still lets it
/// through on purpose.
#[test]
fn a_custom_entry_catching_non_pie_host_programs_is_refused() {
    let sb = Sandbox::new();
    sb.search_bin("");
    let me = fs::read(std::env::current_exe().expect("test binary")).expect("read");
    let mut head = me[..20].to_vec();
    let big = head[5] == 2;
    head[16..18].copy_from_slice(&if big {
        2u16.to_be_bytes()
    } else {
        2u16.to_le_bytes()
    });
    let magic: String = head.iter().map(|b| format!("\\x{b:02x}")).collect();
    let entry = |extra: &str| {
        format!("[entry.exec-host]\ninterpreter = \"/bin/sh\"\nmagic = '{magic}'\n{extra}")
    };
    sb.write_config("60-exec.toml", &entry(""));
    let out = sb.qus(&["register"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused exec-host") && err.contains("host's own programs"),
        "{err}"
    );
    assert!(!sb.has_entry("exec-host"));
    sb.write_config("60-exec.toml", &entry("catch_host_programs = true\n"));
    sb.qus_ok(&["register"]);
    assert!(
        sb.has_entry("exec-host"),
        "catch_host_programs lets it through"
    );
    sb.qus_ok(&["unregister", "--all"]);
}

/// WSL's `[boot] protectBinfmt` bind-mounts a read-only `status`: qus
/// registers without switching binfmt_misc on, and says so, instead of
/// failing the whole pass.
#[test]
fn a_read_only_status_file_is_tolerated() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    let fake = sb.path().join("status-ro");
    fs::write(&fake, "disabled\n").expect("write fake status");
    let status = sb.binfmt().join("status");
    let out = sb
        .command("sh")
        .arg("-c")
        .arg(format!(
            "mount --bind {f} {s} && mount -o remount,bind,ro {s}",
            f = fake.display(),
            s = status.display()
        ))
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "bind-mount a read-only status: {}",
        stderr(&out)
    );
    let out = sb.qus(&["register", "aarch64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be written") && stderr(&out).contains("protectBinfmt"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
}
