//! What a new user trips over: names from Docker, honest exit codes,
//! errors that say what to do, configuration users can read, and the
//! container-ready defaults (static interpreters under F, the setuid
//! check). Real `qus`, real kernel instance, real emulators.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

/// The first line of `text` that starts with `prefix`.
fn line_starting<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

#[test]
fn docker_and_debian_arch_names_work_everywhere() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.install_emulator("arm");
    sb.install_emulator("s390x");
    sb.search_bin("targets = [\"linux/arm64\"]\n");
    // targets from the config, by its Docker name
    sb.qus_ok(&["register"]);
    assert!(sb.has_entry("qemu-aarch64"));
    assert!(!sb.has_entry("qemu-arm"));
    // CLI: with and without linux/, variants, Debian names
    sb.qus_ok(&["register", "linux/arm/v7"]);
    assert!(sb.has_entry("qemu-arm"));
    sb.qus_ok(&["unregister", "armhf"]);
    assert!(!sb.has_entry("qemu-arm"));
    // the entry name works like the arch
    sb.qus_ok(&["unregister", "qemu-aarch64"]);
    assert!(!sb.has_entry("qemu-aarch64"));
    // exclude and per-arch tables by alias
    sb.write_config(
        "20-alias.toml",
        "[qemu]\ntargets = [\"all\"]\nexclude = [\"arm64\"]\n[qemu.arch.armel]\nflags = \"F\"\n",
    );
    sb.qus_ok(&["register"]);
    assert!(
        !sb.has_entry("qemu-aarch64"),
        "exclude = [\"arm64\"] excludes aarch64"
    );
    let arm = sb.entry("qemu-arm").expect("arm registered");
    assert!(
        arm.contains("flags: F\n"),
        "[qemu.arch.armel] applies to arm: {arm}"
    );
    assert_eq!(sb.state_of("qemu-s390x"), "registered");
    // `qus arches` lists the aliases next to the canonical names
    let arches = sb.qus_ok(&["arches"]);
    let line = line_starting(&arches, "aarch64 ");
    assert!(
        line.contains("arm64") && line.contains("arm64/v8"),
        "{line}"
    );
    let arm_line = line_starting(&arches, "arm ");
    for alias in ["arm/v7", "arm/v6", "armhf", "armel"] {
        assert!(arm_line.contains(alias), "{arm_line}");
    }
    // `all` on the command line
    sb.qus_ok(&["unregister", "--all"]);
    fs::remove_file(sb.etc().join("20-alias.toml")).expect("rm");
    sb.write_config("20-none.toml", "[qemu]\ntargets = []\n");
    sb.qus_ok(&["register", "all"]);
    for e in ["qemu-aarch64", "qemu-arm", "qemu-s390x"] {
        assert!(sb.has_entry(e), "register all registers {e}");
    }
}

#[test]
fn usage_errors_exit_2_and_failures_exit_1() {
    let sb = Sandbox::new();
    sb.search_bin("");
    for args in [
        &["register", "arm65"][..],
        &["unregister", "arm65"],
        &["test", "arm65"],
        &["disable", "arm65"],
        &["enable", "arm65"],
        &["run", "--arch", "arm65", "--", "true"],
        &["register", "--flags", "PX"],
        &["--log-level", "warning", "status"],
        &["status", "--no-such-option"],
    ] {
        let out = sb.qus(args);
        assert_eq!(out.status.code(), Some(2), "qus {args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("error: "),
            "one spelling: {}",
            stderr(&out)
        );
    }
    let out = sb.qus(&["register", "arm65"]);
    assert!(
        stderr(&out).contains("unknown arch \"arm65\""),
        "{}",
        stderr(&out)
    );

    // No emulator for a named arch: exit 1, and the line says where qus looked.
    let out = sb.qus(&["register", "aarch64"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("qemu-aarch64 not registered: no qemu-aarch64-static or qemu-aarch64 in"),
        "{}",
        stderr(&out)
    );
    // None at all: a WARN naming the searched directories.
    let out = sb.qus(&["register"]);
    let err = stderr(&out);
    assert!(
        err.contains("no QEMU emulator found for any wanted arch in")
            && err.contains(&sb.bin().display().to_string()),
        "{err}"
    );
    // A config dir given explicitly that does not exist is an error.
    let out = sb
        .tool(QUS)
        .args(["--config-dir", "/nonexistent/qus.d", "status"])
        .output()
        .expect("qus");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("configuration directory /nonexistent/qus.d does not exist"),
        "{}",
        stderr(&out)
    );
    // A custom entry whose interpreter is missing gets a line, and exit 1.
    sb.write_config(
        "30-custom.toml",
        "[entry.wasm]\ntype = \"magic\"\nmagic = '\\x00asm'\ninterpreter = \"/opt/none/wasmtime\"\n",
    );
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("wasm not registered: /opt/none/wasmtime does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_closed_pipe_ends_qus_quietly() {
    let sb = Sandbox::new();
    for cmd in ["arches", "export", "status", "config"] {
        let script = format!(
            "{QUS} --binfmt-misc {} --state-dir {} --config-dir {} {cmd} 2>{}/err | head -c 1 >/dev/null; \
             echo ${{PIPESTATUS[0]}}",
            sb.binfmt().display(),
            sb.state().display(),
            sb.etc().display(),
            sb.path().display()
        );
        let out = sb
            .command("bash")
            .args(["-c", &script])
            .output()
            .expect("bash");
        let code = stdout(&out).trim().to_string();
        let err = fs::read_to_string(sb.path().join("err")).unwrap_or_default();
        assert!(!err.contains("panicked"), "qus {cmd} | head: {err}");
        // 141 = killed by SIGPIPE, as any filter; 0 if it finished first.
        assert!(
            code == "141" || code == "0",
            "qus {cmd} | head exit {code}: {err}"
        );
    }
}

#[test]
fn qus_test_accounts_for_every_registered_entry() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    // cris has no probe program; register it through a copy of the
    // aarch64 emulator (the entry only has to exist).
    let cris = sb.bin().join("qemu-cris-static");
    fs::copy(require_qemu("aarch64"), &cris).expect("copy");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    let status = sb.status();
    let registered = status["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["state"] == "registered")
        .count();
    let out = sb.qus(&["test", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let results = report["results"].as_array().expect("results");
    let through_entries = results.iter().filter(|r| !r["entry"].is_null()).count();
    assert_eq!(through_entries, registered, "{report:#}");
    let cris = results
        .iter()
        .find(|r| r["arch"] == "cris")
        .expect("cris listed");
    assert_eq!(cris["result"], "no-probe");
    assert_eq!(cris["entry"], "qemu-cris");
    // The version of the emulator that ran the probe.
    let aarch64 = results
        .iter()
        .find(|r| r["arch"] == "aarch64")
        .expect("aarch64");
    assert_eq!(aarch64["result"], "pass");
    let want = String::from_utf8_lossy(
        &Command::new(require_qemu("aarch64"))
            .arg("--version")
            .output()
            .expect("--version")
            .stdout,
    )
    .lines()
    .next()
    .unwrap_or("")
    .to_string();
    let got = aarch64["emulator_version"].as_str().expect("version");
    assert!(
        want.ends_with(got) && !got.is_empty(),
        "{want:?} vs {got:?}"
    );
}

#[test]
fn emulator_versions_are_cached_by_file_identity() {
    let sb = Sandbox::new();
    let emu = sb.install_emulator("aarch64");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    let version = |sb: &Sandbox| -> String {
        let s = sb.status();
        s["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["name"] == "qemu-aarch64")
            .and_then(|e| e["emulator_version"].as_str().map(String::from))
            .expect("emulator_version in status --json")
    };
    let real = version(&sb);
    assert!(
        real.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "{real}"
    );
    // The table shows it with -v (and the failures known for it).
    let table = sb.qus_ok(&["status", "-v"]);
    assert!(table.contains(&format!("[QEMU {real}")), "{table}");
    // Read from the cache, not by running the emulator: a planted value
    // comes back as long as the file is the same...
    let cache_path = sb.state().join("versions.json");
    let cache = fs::read_to_string(&cache_path).expect("versions.json written");
    assert!(cache.contains(&real));
    fs::write(&cache_path, cache.replace(&real, "planted")).expect("plant");
    assert_eq!(version(&sb), "planted");
    // ...and an upgrade (another file) is asked again.
    let bytes = fs::read(&emu).expect("read");
    let tmp = sb.bin().join(".new");
    fs::write(&tmp, bytes).expect("write");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::rename(&tmp, &emu).expect("rename over");
    assert_eq!(version(&sb), real);
}

/// A chroot or a minimal image may have no `/dev`: the version is still
/// read (stdin and stderr of `--version` are an empty pipe then).
#[test]
fn versions_are_read_where_there_is_no_dev_null() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    let st = sb
        .command("sh")
        .args(["-c", "mount -t tmpfs -o mode=755 tmpfs /dev"])
        .status()
        .expect("mount");
    assert!(st.success(), "hide /dev inside the sandbox");
    let gone = sb
        .command("test")
        .args(["-e", "/dev/null"])
        .status()
        .expect("test");
    assert!(!gone.success(), "/dev/null still there");
    let table = sb.qus_ok(&["status", "-v"]);
    let line = line_starting(&table, "qemu-aarch64 ");
    assert!(line.contains("[QEMU "), "{table}");
}

#[test]
fn dynamic_emulators_are_refused_under_f_and_static_ones_preferred() {
    let sb = Sandbox::new();
    // A dynamically linked program standing in for Ubuntu's dynamic
    // qemu-aarch64 (only its ELF headers are read).
    let dynamic = sb.bin().join("qemu-aarch64");
    fs::copy(QUS, &dynamic).expect("copy");
    fs::set_permissions(&dynamic, fs::Permissions::from_mode(0o755)).expect("chmod");
    sb.search_bin("binary_names = [\"qemu-{arch}\", \"qemu-{arch}-static\"]\n");
    let out = sb.qus(&["register", "aarch64"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("refused qemu-aarch64")
            && err.contains("is dynamically linked")
            && err.contains("allow_dynamic"),
        "{err}"
    );
    assert!(!sb.has_entry("qemu-aarch64"));
    // A static one anywhere in the search wins over the dynamic one,
    // even though the names list the dynamic name first.
    let static_dir = sb.path().join("static");
    fs::create_dir(&static_dir).expect("mkdir");
    fs::copy(
        require_qemu("aarch64"),
        static_dir.join("qemu-aarch64-static"),
    )
    .expect("copy");
    sb.write_config(
        "20-more.toml",
        &format!("[qemu]\nsearch_path = [\"{}\"]\n", static_dir.display()),
    );
    sb.qus_ok(&["register", "aarch64"]);
    let entry = sb.entry("qemu-aarch64").expect("registered");
    assert!(
        entry.contains(&format!(
            "interpreter {}/qemu-aarch64-static",
            static_dir.display()
        )),
        "{entry}"
    );
    // Explicitly allowed: the dynamic one is registered under F.
    fs::remove_file(sb.etc().join("20-more.toml")).expect("rm");
    sb.write_config(
        "30-allow.toml",
        "[qemu.arch.aarch64]\nallow_dynamic = true\n",
    );
    sb.qus_ok(&["register", "aarch64"]);
    let entry = sb.entry("qemu-aarch64").expect("registered");
    assert!(
        entry.contains(&format!("interpreter {}", dynamic.display())),
        "{entry}"
    );
    // Without F there is nothing to refuse.
    fs::remove_file(sb.etc().join("30-allow.toml")).expect("rm");
    sb.qus_ok(&["register", "--flags", "P", "aarch64"]);
    assert!(sb
        .entry("qemu-aarch64")
        .expect("registered")
        .contains("flags: P\n"));
}

#[test]
fn setuid_programs_need_the_c_flag_and_qus_test_says_so() {
    let sb = Sandbox::with_host_ids();
    fs::create_dir_all(sb.etc()).expect("etc");
    fs::create_dir_all(sb.bin()).expect("bin");
    sb.install_emulator("aarch64");
    sb.search_bin("");
    sb.qus_ok(&["register", "aarch64"]);
    let report = |sb: &Sandbox| -> serde_json::Value {
        let out = sb.qus(&["test", "--json", "aarch64"]);
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let r = report(&sb);
    assert_eq!(r["setuid"]["result"], "needs-c", "{r:#}");
    assert_eq!(r["setuid"]["c_flag"], false);
    let table = sb.qus_ok(&["test", "aarch64"]);
    assert!(table.contains("setuid: needs the C flag"), "{table}");
    // With C the same setuid-root program runs as root.
    sb.qus_ok(&["register", "--flags", "PFC", "aarch64"]);
    let r = report(&sb);
    assert_eq!(r["setuid"]["result"], "works", "{r:#}");
    assert_eq!(r["setuid"]["c_flag"], true);
    // And both reports say what C means, for qus's entry and another's.
    sb.register_raw(":other-c:M::\\x7fELFqus-other::/bin/sh:OC");
    for args in [&["test", "aarch64"][..], &["status"][..]] {
        let err = stderr(&sb.qus(args));
        for entry in ["qemu-aarch64", "other-c"] {
            assert!(
                err.contains(&format!("warning: {entry} has the C flag"))
                    && err.contains("root shell"),
                "qus {args:?} does not warn about {entry}: {err}"
            );
        }
    }
}

/// A later drop-in's list replaces the earlier one, like every other key
/// (containers.conf's rule): a host's file narrows the site's `targets`
/// with one file, and the kernel gets just that. `{append = true}` as the
/// last element adds instead, and `qus config` shows where each part came
/// from; the marker anywhere else is an error at its line; `[]` empties.
#[test]
fn a_later_list_replaces_and_append_is_explicit() {
    let sb = Sandbox::new();
    for arch in ["aarch64", "riscv64", "s390x"] {
        sb.install_emulator(arch);
    }
    sb.search_bin("");
    sb.write_config(
        "20-site.toml",
        "[qemu]\ntargets = [\"aarch64\", \"riscv64\", \"s390x\"]\nexclude = [\"mips64\"]\n",
    );
    sb.write_config("30-thishost.toml", "[qemu]\ntargets = [\"arm64\"]\n");
    sb.qus_ok(&["register"]);
    assert_eq!(sb.entries(), ["qemu-aarch64"], "the host's list narrows");
    let out = sb.qus_ok(&["config"]);
    let line = line_starting(&out, "targets = ");
    assert!(
        line.starts_with("targets = [\"aarch64\"]") && line.contains("30-thishost.toml:2"),
        "{line}"
    );
    sb.write_config(
        "30-thishost.toml",
        "[qemu]\ntargets = [\"arm64\"]\nexclude = [\"s390x\", {append = true}]\n",
    );
    let out = sb.qus_ok(&["config"]);
    let line = line_starting(&out, "exclude = ");
    assert!(
        line.starts_with("exclude = [\"mips64\", \"s390x\"]")
            && line.contains("20-site.toml:3 + ")
            && line.contains("30-thishost.toml:3"),
        "{line}"
    );
    sb.write_config(
        "30-thishost.toml",
        "[qemu]\ntargets = [\n  \"arm64\",\n  {append = true},\n  \"s390x\",\n]\n",
    );
    let out = sb.qus(&["config"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("30-thishost.toml:4") && err.contains("must be the last element"),
        "{err}"
    );
    sb.write_config("30-thishost.toml", "[qemu]\nexclude = []\n");
    let out = sb.qus_ok(&["config"]);
    let line = line_starting(&out, "exclude = ");
    assert!(
        line.starts_with("exclude = []") && line.contains("30-thishost.toml:2"),
        "{line}"
    );
    sb.qus_ok(&["register"]);
    assert_eq!(
        sb.entries(),
        ["qemu-aarch64", "qemu-riscv64", "qemu-s390x"],
        "the site's targets again"
    );
}

#[test]
fn config_errors_speak_the_configs_language() {
    let sb = Sandbox::new();
    sb.search_bin("");
    let check = |name: &str, text: &str| -> String {
        let p = sb.path().join(name);
        fs::write(&p, text).expect("write");
        let out = sb.qus(&["config", "--check", &p.display().to_string()]);
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = stderr(&out);
        assert!(
            err.contains(&p.display().to_string()),
            "names the file: {err}"
        );
        err
    };
    let err = check("typo.toml", "[qemu]\nexlude = [\"s390x\"]\n");
    assert!(
        err.contains("unknown key `exlude`: did you mean `exclude`?"),
        "{err}"
    );
    assert!(err.contains(":2"), "names the line: {err}");
    let err = check(
        "offset.toml",
        "[entry.x]\ntype = \"magic\"\noffset = -1\nmagic = 'ab'\ninterpreter = \"/bin/sh\"\n",
    );
    assert!(err.contains("expected a whole number"), "{err}");
    assert!(!err.contains("u32") && !err.contains("u64"), "{err}");
    let err = check(
        "magic.toml",
        "[entry.x]\ntype = \"magic\"\nmagic = \"\\u00ffELF\"\ninterpreter = \"/bin/sh\"\n",
    );
    assert!(
        err.contains("is not ASCII")
            && err.contains("literal (single-quoted) string")
            && err.contains("\\x7fELF"),
        "{err}"
    );
    // A good file passes, with the directory's files around it.
    let good = sb.path().join("good.toml");
    fs::write(&good, "[qemu]\nexclude = [\"arm64\"]\n").expect("write");
    let out = sb.qus(&["config", "--check", &good.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ok: "), "{}", stdout(&out));
}

#[test]
fn qus_config_shows_everything_including_what_does_not_apply() {
    let sb = Sandbox::new();
    sb.search_bin("");
    // A second directory that masks one file and disables another.
    let later = sb.path().join("later");
    fs::create_dir(&later).expect("mkdir");
    sb.write_config("20-masked.toml", "[qemu]\nexclude = [\"s390x\"]\n");
    sb.write_config("30-off.toml", "[qemu]\nexclude = [\"mips\"]\n");
    fs::write(later.join("20-masked.toml"), "[qemu]\nflags = \"F\"\n").expect("write");
    std::os::unix::fs::symlink("/dev/null", later.join("30-off.toml")).expect("symlink");
    fs::write(sb.etc().join("README"), "not config").expect("write");
    let out = sb
        .tool(QUS)
        .args(["--config-dir", &later.display().to_string(), "config"])
        .output()
        .expect("qus");
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let etc = sb.etc().display().to_string();
    assert!(
        text.contains(&format!(
            "{etc}/20-masked.toml: masked by {}/20-masked.toml",
            later.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{etc}/30-off.toml: masked by")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{etc}/README: ignored: not a *.toml file")),
        "{text}"
    );
    assert!(
        text.contains("enable = true"),
        "binfmt.enable shown: {text}"
    );
    assert!(
        text.contains("# --binfmt-misc or QUS_BINFMT_MISC"),
        "the override's source: {text}"
    );
    assert!(
        text.contains("# state dir: ") && text.contains("--state-dir or QUS_STATE_DIR"),
        "{text}"
    );
}

#[test]
fn status_check_and_problems_for_scripts() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.install_emulator("s390x");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    let out = sb.qus(&["status", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Someone disables an entry by hand.
    sb.write_inside(&sb.binfmt().join("qemu-s390x"), "0");
    let out = sb.qus(&["status", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("1 entries are not as wanted"),
        "{}",
        stderr(&out)
    );
    let out = sb.qus(&["status", "--problems"]);
    let text = stdout(&out);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("qemu-")).collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert!(
        rows[0].contains("qemu-s390x") && rows[0].contains("disabled"),
        "{text}"
    );
}

#[test]
fn qusd_says_what_it_leaves_behind() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    let mut notify = NotifySocket::new(sb.path());
    let mut d = sb.qusd_ready(&mut notify);
    assert!(
        d.count("watching ") >= 2,
        "debug lists the watched directories"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(10), Some(0));
    assert_eq!(
        d.count("qusd stopped; 1 entries it registered stay registered (`qus unregister --all` removes them"),
        1,
        "{}",
        d.log_text()
    );
}

/// Arch names where users type them: comma lists wherever several
/// arches are taken, a suggestion for a typo, and the qus command for a
/// line pasted from a peer's README (exit 2, as every usage error).
#[test]
fn comma_lists_typos_and_peer_commands_get_an_answer() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.install_emulator("riscv64");
    sb.search_bin("");
    sb.qus_ok(&["register", "arm64,riscv64"]);
    assert_eq!(sb.entries(), ["qemu-aarch64", "qemu-riscv64"]);
    let t: serde_json::Value =
        serde_json::from_str(&sb.qus_ok(&["test", "arm64,riscv64", "--json"])).expect("json");
    assert_eq!(t["summary"]["pass"], 2, "{t:#}");
    sb.qus_ok(&["disable", "linux/arm64,riscv64"]);
    assert!(sb.entries().is_empty(), "{:?}", sb.entries());
    sb.qus_ok(&["enable", "arm64,riscv64"]);
    sb.qus_ok(&["unregister", "aarch64,riscv64"]);
    assert!(sb.entries().is_empty());
    for (args, hint) in [
        (&["register", "aarch46"][..], "did you mean aarch64?"),
        (&["disable", "amr64"], "did you mean amd64 or arm64?"),
        (&["--install", "arm64"], "qus register arm64"),
        (
            &["register", "--reset", "-p", "yes"],
            "qus unregister --all && qus register",
        ),
        (&["--uninstall", "qemu-*"], "qus unregister --all"),
        (
            &["--qemu-path", "/opt/qemu"],
            "search_path = [\"/opt/qemu\"]",
        ),
    ] {
        let out = sb.qus(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "qus {args:?}: {err}");
        assert!(err.contains(hint), "qus {args:?}: {err}");
        assert!(!err.contains("to pass '--"), "clap's tip misleads: {err}");
    }
}

/// Small things users met: `qus arches` keeps its columns for the
/// longest names, and a bad `--flags` says the allowed letters once.
#[test]
fn arches_columns_hold_and_flag_errors_say_it_once() {
    let sb = Sandbox::new();
    let table = sb.qus_ok(&["arches"]);
    let mut lines = table.lines();
    let header = lines.next().expect("header");
    for column in ["EMULATOR", "FAMILY", "NATIVE"] {
        let at = header.find(column).expect(column);
        for row in table.lines().skip(1) {
            let before = row.as_bytes().get(at - 1).copied();
            let here = row.as_bytes().get(at).copied();
            assert!(
                before == Some(b' ') && here.is_some_and(|c| c != b' '),
                "column {column} broken in {row:?}\n{table}"
            );
        }
    }
    assert!(table.contains("qemu-sparc32plus") && table.contains("qemu-microblazeel"));
    let out = sb.qus(&["register", "--flags", "pf"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("P, O, C, F").count(), 1, "{err}");
}

/// Options given through `QUS_*` are not shown as if they had to be
/// typed: clap puts every option that has a value in an error's usage
/// line, environment included.
#[test]
fn usage_lines_leave_out_what_the_environment_gave() {
    for (args, usage) in [
        (&["which"][..], "Usage: qus which <FILE>"),
        (&["enable"], "Usage: qus enable <ARCH>..."),
        (&["run"], "Usage: qus run <CMD>..."),
    ] {
        let out = Command::new(qus_bin())
            .args(args)
            .env("QUS_STATE_DIR", "/nonexistent/state")
            .env("QUS_CONFIG_DIRS", "/nonexistent/etc")
            .env("QUS_BINFMT_MISC", "/nonexistent/binfmt")
            .output()
            .expect("run qus");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "qus {args:?}: {err}");
        assert_eq!(line_starting(&err, "Usage: "), usage, "qus {args:?}: {err}");
    }
}

/// `qus run` works for root: the id maps of its namespace (0-65535) are
/// written from outside, as only the parent namespace may; without a
/// login session's runtime dir it uses `/run/user/0` (an empty
/// directory on the host; its contents live in the namespace).
#[test]
fn qus_run_works_for_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs qus as host root: run the tests as root (CI does)"
    );
    let dir = tempfile::tempdir().expect("probe dir");
    let probe = dir.path().join("probe-aarch64");
    fs::write(&probe, qus::probe::find("aarch64").expect("probe").program).expect("probe");
    fs::set_permissions(&probe, fs::Permissions::from_mode(0o755)).expect("chmod");
    let empty = tempfile::tempdir().expect("config dir");
    let out = std::process::Command::new(qus_bin())
        .env_remove("XDG_RUNTIME_DIR")
        .env("QUS_CONFIG_DIRS", empty.path())
        .args(["run", "--arch", "aarch64", "--"])
        .arg(&probe)
        .output()
        .expect("qus run");
    let err = stderr(&out);
    assert!(out.status.success(), "qus run as root failed: {err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "qus-probe aarch64\n",
        "{err}"
    );
    assert!(!err.contains("sudo"), "a hint that cannot help root: {err}");
}

/// In a user namespace without `XDG_RUNTIME_DIR` (and no /run/user/UID), a
/// real unprivileged user's `qus status` says what is missing instead of
/// falling back to the host's `/run/qusd` and binfmt_misc, and writes
/// nothing there.
#[test]
fn a_user_namespace_without_a_runtime_dir_is_told_so() {
    require_tool("setpriv", "util-linux");
    require_tool("unshare", "util-linux");
    let uid = 65533;
    assert!(
        !std::path::Path::new(&format!("/run/user/{uid}")).exists(),
        "/run/user/{uid} exists: this test needs a user without a runtime dir"
    );
    let before: Vec<_> = std::fs::read_dir("/run/qusd")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let out = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "--",
            "unshare",
            "--user",
            "--map-root-user",
            "env",
            "-u",
            "XDG_RUNTIME_DIR",
        ])
        .arg(qus_bin())
        .arg("status")
        .output()
        .expect("qus status");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("XDG_RUNTIME_DIR is not set") && err.contains("--state-dir"),
        "{err}"
    );
    let after: Vec<_> = std::fs::read_dir("/run/qusd")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(before, after, "qus status wrote into the host's /run/qusd");
}
