//! Living with other handlers: other emulators for the same arch under
//! other names, the same name from another tool, flushes, and the CLI
//! beside a running qusd. Real kernel instance, real binaries, real
//! foreign programs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{require_qemu, stderr, wait_for, NotifySocket, Sandbox};
use qus::probe;

const WAIT: u64 = 15;

/// A Rosetta-like handler for aarch64 under its own name: a wrapper that
/// prints a marker, then runs the program with the real emulator.
fn register_rosetta(sb: &Sandbox) {
    let wrapper = sb.path().join("rosetta");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho rosetta-ran\nexec {} \"$@\"\n",
            require_qemu("aarch64").display()
        ),
    )
    .expect("wrapper");
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
    let a = qus::arch::find("aarch64").expect("arch");
    sb.register_raw(&format!(
        ":rosetta:M::{}:{}:{}:",
        qus::escape::escape_all(a.magic),
        qus::escape::escape_all(a.mask),
        wrapper.display()
    ));
}

fn run_aarch64(sb: &Sandbox) -> String {
    let p = probe::find("aarch64").expect("probe");
    let out = sb.run_program("probe-aarch64", p.program);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn entry_json(sb: &Sandbox, name: &str) -> serde_json::Value {
    sb.status()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .expect("entry")
}

#[test]
fn another_handler_is_yielded_to_until_it_goes() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    register_rosetta(&sb);
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    assert!(
        !sb.has_entry("qemu-aarch64"),
        "qus shadowed the other handler"
    );
    let e = entry_json(&sb, "qemu-aarch64");
    assert_eq!(e["state"], "handled-by", "{e}");
    assert_eq!(e["used"], "rosetta", "{e}");
    assert!(e["detail"]
        .as_str()
        .expect("detail")
        .contains("handled by rosetta"));
    assert_eq!(run_aarch64(&sb), "rosetta-ran\nqus-probe aarch64\n");
    // The other handler goes: qusd registers its own at once.
    sb.write_inside(&sb.binfmt().join("rosetta"), "-1");
    wait_for(WAIT, "qemu-aarch64 registered once rosetta is gone", || {
        sb.has_entry("qemu-aarch64")
    });
    assert_eq!(run_aarch64(&sb), "qus-probe aarch64\n");
    // It comes back (newer, so the kernel uses it): qus yields again.
    register_rosetta(&sb);
    wait_for(WAIT, "qemu-aarch64 withdrawn for rosetta", || {
        !sb.has_entry("qemu-aarch64")
    });
    d.settle(&sb);
    assert_eq!(run_aarch64(&sb), "rosetta-ran\nqus-probe aarch64\n");
}

#[test]
fn override_registers_anyway_and_test_names_the_kernels_choice() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("others = \"override\"\n");
    register_rosetta(&sb);
    sb.qus_ok(&["register"]);
    assert!(sb.has_entry("qemu-aarch64"));
    // qus's entry is newer: the kernel uses it.
    assert_eq!(run_aarch64(&sb), "qus-probe aarch64\n");
    let e = entry_json(&sb, "qemu-aarch64");
    assert_eq!(e["used"], "qemu-aarch64", "{e}");
    assert!(
        e["detail"]
            .as_str()
            .expect("detail")
            .contains("shadows rosetta"),
        "{e}"
    );
    let t: serde_json::Value =
        serde_json::from_str(&sb.qus_ok(&["test", "aarch64", "--json"])).expect("json");
    assert_eq!(t["results"][0]["entry"], "qemu-aarch64", "{t}");
    // Re-registered after qus: now rosetta is the kernel's choice, and
    // `qus test` says so, not the first entry in name order.
    sb.write_inside(&sb.binfmt().join("rosetta"), "-1");
    register_rosetta(&sb);
    // (Its marker line makes the probe's output wrong: `qus test` fails,
    // and names the entry that really ran it.)
    let out = sb.qus(&["test", "aarch64", "--json"]);
    let t: serde_json::Value =
        serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).expect("json");
    assert_eq!(t["results"][0]["entry"], "rosetta", "{t}");
    assert_eq!(run_aarch64(&sb), "rosetta-ran\nqus-probe aarch64\n");
}

/// Debian's own entries (registered from /usr/lib/binfmt.d as
/// systemd-binfmt does) are taken over by default and put back by
/// `qus unregister`.
#[test]
fn the_distributions_entries_are_taken_over_and_put_back() {
    let conf = std::path::Path::new("/usr/lib/binfmt.d/qemu-aarch64.conf");
    assert!(
        conf.is_file(),
        "this test needs Debian's {}: install it with `apt-get install -y qemu-user-static`",
        conf.display()
    );
    let line = fs::read_to_string(conf)
        .expect("conf")
        .lines()
        .find(|l| l.starts_with(':'))
        .expect("register line")
        .to_string();
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    sb.register_raw(&line);
    let debian = sb.entry("qemu-aarch64").expect("debian's entry");
    let out = sb.qus(&["register"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ours = sb.entry("qemu-aarch64").expect("ours");
    assert!(ours.contains(&sb.bin().display().to_string()), "{ours}");
    assert_eq!(run_aarch64(&sb), "qus-probe aarch64\n");
    sb.qus_ok(&["unregister", "aarch64"]);
    assert_eq!(sb.entry("qemu-aarch64").as_deref(), Some(debian.as_str()));
    // Taken over again, then disabled: disabled means no entry for the
    // arch, so Debian's is not put back (only an unregister hands it back).
    sb.qus_ok(&["register"]);
    assert_ne!(sb.entry("qemu-aarch64").as_deref(), Some(debian.as_str()));
    sb.qus_ok(&["disable", "aarch64"]);
    assert!(!sb.has_entry("qemu-aarch64"));
}

/// With the flush guard on, a `-1` to `status` (what systemd-binfmt and a
/// WSL flush do) brings back other tools' entries exactly; one removed on
/// its own stays removed.
#[test]
fn the_flush_guard_restores_others_after_a_flush_only() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("[guard]\nothers = true\n");
    sb.register_raw(":WSLInterop:M::MZ::/bin/sh:PF");
    sb.register_raw(":jar:E::jar::/bin/sh:");
    sb.write_inside(&sb.binfmt().join("jar"), "0");
    // An interpreter whose name ends in a tab: the read-back must keep it.
    let tabbed = sb.bin().join("interp\t");
    std::fs::copy("/bin/sh", &tabbed).expect("copy");
    sb.register_raw(&format!(":tabbed:E::tabbed::{}:", tabbed.display()));
    let wsl = sb.entry("WSLInterop").expect("wsl");
    let jar = sb.entry("jar").expect("jar");
    let tab = sb.entry("tabbed").expect("tabbed");
    assert!(tab.contains("interp\t\n"), "{tab:?}");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    sb.write_inside(&sb.binfmt().join("status"), "-1");
    wait_for(WAIT, "everything back after the flush", || {
        sb.entries() == ["WSLInterop", "jar", "qemu-aarch64", "tabbed"]
    });
    assert_eq!(sb.entry("WSLInterop").as_deref(), Some(wsl.as_str()));
    assert_eq!(
        sb.entry("tabbed").as_deref(),
        Some(tab.as_str()),
        "byte for byte"
    );
    assert_eq!(
        sb.entry("jar").as_deref(),
        Some(jar.as_str()),
        "disabled stays disabled"
    );
    // One removed on its own: no fight.
    sb.write_inside(&sb.binfmt().join("jar"), "-1");
    d.settle(&sb);
    assert_eq!(sb.entries(), ["WSLInterop", "qemu-aarch64", "tabbed"]);
}

/// systemd-binfmt flushes and registers its own entries again at once, so
/// binfmt_misc is not empty by the time qusd looks (on Debian 13 another
/// tool's entry stayed gone after `systemctl restart systemd-binfmt`): the
/// names binfmt_misc reported removed tell the flush all the same.
#[test]
fn the_flush_guard_sees_a_flush_followed_at_once_by_registrations() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("[guard]\nothers = true\n");
    sb.register_raw(":WSLInterop:M::MZ::/bin/sh:PF");
    let wsl = sb.entry("WSLInterop").expect("wsl");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    // As systemd-binfmt does: flush, then register its own, in one go.
    let st = sb
        .command("sh")
        .arg("-c")
        .arg("printf -- -1 > \"$1/status\" && printf ':distro-jar:E::jar::/bin/sh:' > \"$1/register\"")
        .arg("sh")
        .arg(sb.binfmt())
        .status()
        .expect("sh");
    assert!(st.success());
    wait_for(WAIT, "the other tool's entry back after the flush", || {
        sb.entries() == ["WSLInterop", "distro-jar", "qemu-aarch64"]
    });
    assert_eq!(sb.entry("WSLInterop").as_deref(), Some(wsl.as_str()));
    assert!(
        d.log_text().contains("binfmt_misc was flushed"),
        "{}",
        d.log_text()
    );
}

/// `qus disable` changes the configuration, so qusd keeps the arch
/// unregistered; `qus enable` brings it back. A plain `qus unregister`
/// beside a running qusd says that qusd will undo it.
#[test]
fn disable_and_enable_are_kept_by_the_daemon() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.install_emulator("s390x");
    sb.search_bin("");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    let out = sb.qus(&["unregister", "s390x"]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains(&format!("qusd (pid {}) is running", d.pid()))
            && stderr(&out).contains("qus disable"),
        "{}",
        stderr(&out)
    );
    wait_for(WAIT, "qusd put s390x back", || sb.has_entry("qemu-s390x"));
    let out = sb.qus_ok(&["disable", "aarch64"]);
    assert!(out.contains("disabled aarch64 in"), "{out}");
    assert!(!sb.has_entry("qemu-aarch64"));
    d.settle(&sb);
    assert!(!sb.has_entry("qemu-aarch64"), "qusd brought it back");
    let config = sb.qus_ok(&["config"]);
    assert!(config.contains("90-qus-cli.toml"), "{config}");
    sb.qus_ok(&["enable", "aarch64"]);
    assert!(sb.has_entry("qemu-aarch64"));
    d.settle(&sb);
    assert!(sb.has_entry("qemu-aarch64"));
    assert!(!sb.etc().join("90-qus-cli.toml").exists());
}

#[test]
fn which_names_the_entry_the_kernel_uses() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("others = \"override\"\n");
    register_rosetta(&sb);
    sb.qus_ok(&["register"]);
    sb.register_raw(":jar:E::jar::/bin/sh:");
    let prog = sb.path().join("prog");
    fs::write(&prog, probe::find("aarch64").expect("probe").program).expect("write");
    let out = sb.qus_ok(&["which", &prog.display().to_string()]);
    assert!(out.contains(": qemu-aarch64 (interpreter"), "{out}");
    assert!(out.contains("owned by qus"), "{out}");
    assert!(out.contains("also caught by rosetta (not qus's)"), "{out}");
    let jar = sb.path().join("app.jar");
    fs::write(&jar, "PK\x03\x04").expect("jar");
    let out = sb.qus_ok(&["which", &jar.display().to_string()]);
    assert!(out.contains(": jar (interpreter /bin/sh"), "{out}");
    // A native program needs no entry: it runs, and that is no failure.
    let native = sb.qus(&["which", "/bin/true"]);
    let said = String::from_utf8_lossy(&native.stdout).into_owned();
    assert_eq!(native.status.code(), Some(0), "{said}");
    assert!(said.contains("the host runs it natively"), "{said}");
    // A file nothing runs is one.
    let text = sb.path().join("notes.txt");
    fs::write(&text, "just text\n").expect("text");
    let none = sb.qus(&["which", &text.display().to_string()]);
    let said = String::from_utf8_lossy(&none.stdout).into_owned();
    assert_eq!(none.status.code(), Some(1), "{said}");
    assert!(said.contains("no enabled binfmt_misc entry"), "{said}");
}

/// A binfmt.d file the distribution ships whose interpreter is not one of
/// its QEMU wrappers (Debian's python3.11 or llvm entries): the register
/// line, and the magic in the form a qus drop-in takes it.
fn shipped_non_qemu_line() -> (String, String) {
    let dir = std::path::Path::new("/usr/lib/binfmt.d");
    let mut lines: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|f| fs::read_to_string(f.path()).ok())
                .flat_map(|t| t.lines().map(str::to_string).collect::<Vec<_>>())
                .collect()
        })
        .unwrap_or_default();
    lines.sort();
    let line = lines
        .into_iter()
        .find(|l| {
            let f: Vec<&str> = l.split(':').collect();
            f.len() >= 8
                && f[2] == "M"
                && f[3].is_empty()
                && f[5].is_empty()
                && !f[6].starts_with("/usr/libexec/qemu-binfmt/")
        })
        .expect(
            "this test needs a binfmt.d file in /usr/lib/binfmt.d that is not QEMU's \
             (Debian's python3.11 ships one): apt-get install -y python3",
        );
    let magic = line.split(':').nth(4).expect("magic").replace('\\', "\\\\");
    (line, magic)
}

/// `takeover = "distro"` (the default) takes over a same-named entry that
/// a distribution's binfmt.d file registers exactly, and leaves one that
/// no shipped file accounts for; a re-run changes nothing.
#[test]
fn entries_from_the_distributions_binfmt_d_files_are_taken_over_others_are_not() {
    let (line, magic) = shipped_non_qemu_line();
    let name = line.split(':').nth(1).expect("name").to_string();
    let sb = Sandbox::new();
    sb.search_bin(&format!(
        "[entry.\"{name}\"]\nmagic = \"{magic}\"\ninterpreter = \"/usr/bin/sleep\"\n"
    ));
    // The distribution's entry, exactly as its file registers it: taken.
    sb.register_raw(&line);
    let out = sb.qus(&["register"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let entry = sb.entry(&name).expect("entry");
    assert!(entry.contains("interpreter /usr/bin/sleep"), "{entry}");
    let again = sb.qus(&["register"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(" 0 writes"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    // The same name from a tool no shipped file accounts for: left alone.
    let sb = Sandbox::new();
    sb.search_bin(&format!(
        "[entry.\"{name}\"]\nmagic = \"{magic}\"\ninterpreter = \"/usr/bin/sleep\"\n"
    ));
    let mut fields: Vec<&str> = line.split(':').collect();
    fields[6] = "/bin/true";
    sb.register_raw(&fields.join(":"));
    let out = sb.qus(&["register"]);
    assert!(
        stderr(&out).contains(&format!("conflict {name}")),
        "{}",
        stderr(&out)
    );
    let entry = sb.entry(&name).expect("entry");
    assert!(entry.contains("interpreter /bin/true"), "{entry}");
}

/// Every spelling users write for an arch (the table's name, Docker's
/// platform with and without `linux/` and a variant, Debian's name, the
/// entry name with either) means the same arch on every subcommand that
/// takes one: register, test, disable, enable and unregister each act on
/// `qemu-aarch64` or `qemu-arm`, and `enable all` undoes any `disable`.
#[test]
fn every_spelling_of_an_arch_means_the_same_arch_on_every_subcommand() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.install_emulator("arm");
    sb.search_bin("");
    let classes: &[(&str, &[&str])] = &[
        (
            "aarch64",
            &[
                "aarch64",
                "arm64",
                "linux/arm64",
                "linux/arm64/v8",
                "qemu-aarch64",
                "qemu-arm64",
            ],
        ),
        (
            "arm",
            &["arm", "linux/arm/v7", "arm/v6", "armhf", "qemu-armhf"],
        ),
    ];
    for (arch, spellings) in classes {
        let entry = format!("qemu-{arch}");
        for name in *spellings {
            sb.qus_ok(&["unregister", "--all"]);
            let out = sb.qus_ok(&["register", name]);
            assert!(sb.has_entry(&entry), "register {name}: no {entry}\n{out}");
            let report: serde_json::Value =
                serde_json::from_str(&sb.qus_ok(&["test", name, "--json"])).expect("json");
            assert_eq!(report["results"][0]["arch"], *arch, "test {name}: {report}");
            assert_eq!(report["results"][0]["result"], "pass", "test {name}");
            let out = sb.qus_ok(&["disable", name]);
            assert!(
                out.contains(&format!("disabled {arch} in")),
                "disable {name}: {out}"
            );
            assert!(!sb.has_entry(&entry), "disable {name} left {entry}");
            let out = sb.qus_ok(&["enable", name]);
            assert!(sb.has_entry(&entry), "enable {name}: no {entry}\n{out}");
            sb.qus_ok(&["unregister", name]);
            assert!(!sb.has_entry(&entry), "unregister {name} left {entry}");
        }
    }
    sb.qus_ok(&["disable", "arm64", "linux/arm/v7"]);
    assert!(!sb.has_entry("qemu-aarch64") && !sb.has_entry("qemu-arm"));
    let out = sb.qus_ok(&["enable", "all"]);
    assert!(
        sb.has_entry("qemu-aarch64") && sb.has_entry("qemu-arm"),
        "enable all registered nothing:\n{out}"
    );
    assert!(!sb.etc().join("90-qus-cli.toml").exists());
}

/// `qus status` shows the kernel's whole table, as `update-binfmts
/// --display` does: other tools' entries (not QEMU, not configured) are
/// listed with their interpreter, flags, whether enabled and what they
/// run, and left alone; they never count as problems.
#[test]
fn status_lists_other_tools_entries_too() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    sb.register_raw(":python3.11:M::\\xa7\\x0d\\x0d\\x0a::/usr/bin/python3.11:");
    sb.register_raw(":jar:E::jar::/usr/bin/jexec:");
    sb.write_inside(&sb.binfmt().join("jar"), "0");
    let status = sb.status();
    let row = |name: &str| -> serde_json::Value {
        status["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {name}: {status:#}"))
    };
    let py = row("python3.11");
    assert_eq!(py["state"], "foreign", "{py}");
    assert_eq!(py["owned"], false);
    assert_eq!(py["interpreter"], "/usr/bin/python3.11");
    assert_eq!(py["kernel"]["enabled"], true);
    let jar = row("jar");
    assert_eq!(jar["kernel"]["enabled"], false, "{jar}");
    assert!(
        jar["detail"]
            .as_str()
            .is_some_and(|d| d.contains("disabled")),
        "{jar}"
    );
    assert_eq!(row("qemu-aarch64")["state"], "registered");
    assert_eq!(status["summary"]["foreign"], 2, "{status:#}");
    let table = sb.qus_ok(&["status"]);
    let line = table
        .lines()
        .find(|l| l.starts_with("python3.11 "))
        .unwrap_or_else(|| panic!("no python3.11 row:\n{table}"));
    assert!(
        line.contains("foreign") && line.contains("/usr/bin/python3.11"),
        "{line}"
    );
    let out = sb.qus(&["status", "--check"]);
    assert!(out.status.success(), "foreign entries are no problem");
    // And they are left alone by everything qus does.
    sb.qus_ok(&["unregister", "--all"]);
    assert_eq!(sb.entries(), ["jar", "python3.11"]);
}

/// With qusd running, `qus register ARCH` for an arch the configuration
/// leaves out says that qusd will remove it and how to keep it; `qus
/// enable ARCH` then keeps it (the managed drop-in says `enabled = true`),
/// and says "now registered", not the state before the pass.
#[test]
fn a_named_registration_qusd_would_undo_is_announced_and_enable_keeps_it() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.install_emulator("ppc64le");
    sb.search_bin("targets = [\"aarch64\"]\n");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
    let out = sb.qus(&["register", "ppc64le"]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("qusd (pid {}) is running", d.pid()))
            && err.contains("will remove ppc64le again")
            && err.contains("`qus enable ppc64le`"),
        "{err}"
    );
    wait_for(WAIT, "qusd removed ppc64le as announced", || {
        !sb.has_entry("qemu-ppc64le")
    });
    let out = sb.qus_ok(&["enable", "ppc64le"]);
    assert!(
        out.contains("enabled ppc64le in") && out.contains("now registered"),
        "{out}"
    );
    assert!(sb.has_entry("qemu-ppc64le"));
    let managed = fs::read_to_string(sb.etc().join("90-qus-cli.toml")).expect("managed drop-in");
    assert!(
        managed.contains("[qemu.arch.ppc64le]\nenabled = true"),
        "{managed}"
    );
    d.settle(&sb);
    assert!(sb.has_entry("qemu-ppc64le"), "qusd removed it after enable");
    // An arch the configuration targets needs nothing kept.
    sb.qus_ok(&["disable", "aarch64"]);
    sb.qus_ok(&["enable", "aarch64"]);
    let managed = fs::read_to_string(sb.etc().join("90-qus-cli.toml")).expect("managed drop-in");
    assert!(!managed.contains("aarch64"), "{managed}");
}

/// Three `qus disable` at once keep all three arches disabled (the edits
/// of the managed drop-in are serialized), and one under `umask 000`
/// still makes a config directory nobody else may write.
#[test]
fn concurrent_disables_lose_nothing_and_umask_000_opens_nothing() {
    let sb = Sandbox::new();
    let arches = ["aarch64", "riscv64", "s390x"];
    for arch in arches {
        sb.install_emulator(arch);
    }
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    for round in 0..5 {
        let children: Vec<_> = arches
            .iter()
            .map(|a| {
                sb.tool(&common::qus_bin())
                    .args(["disable", a])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("qus disable")
            })
            .collect();
        for mut c in children {
            assert!(c.wait().expect("wait").success(), "round {round}");
        }
        let managed = fs::read_to_string(sb.etc().join("90-qus-cli.toml")).expect("managed");
        for a in arches {
            assert!(
                managed.contains(&format!("[qemu.arch.{a}]\nenabled = false")),
                "round {round}: {a} lost:\n{managed}"
            );
        }
        assert!(sb.entries().is_empty(), "round {round}: {:?}", sb.entries());
        sb.qus_ok(&["enable", "all"]);
        assert_eq!(sb.entries().len(), 3);
    }
    // A config dir qus has to make, under umask 000: in the sandbox's user
    // namespace the last default one is $HOME/.config/qus.d.
    let home = sb.path().join("home");
    fs::create_dir(&home).expect("home");
    let st = sb
        .command("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; HOME='{}'; export HOME; unset XDG_CONFIG_HOME; exec '{}' --binfmt-misc '{}' --state-dir '{}' --host-arch x86_64 disable s390x",
            home.display(),
            common::qus_bin(),
            sb.binfmt().display(),
            sb.state().display()
        ))
        .status()
        .expect("qus");
    assert!(st.success());
    let made = home.join(".config/qus.d");
    for dir in [home.join(".config"), made.clone()] {
        let mode = fs::metadata(&dir).expect("dir").permissions().mode() & 0o777;
        assert_eq!(
            mode,
            0o755,
            "{} made {mode:o} under umask 000",
            dir.display()
        );
    }
    assert!(made.join("90-qus-cli.toml").is_file());
}

/// A record of a replaced entry lives until that entry is put back: not
/// lost when qus drops its own entry for a while (the arch disabled and
/// enabled again, the emulator writable by its group and then not, moved
/// away and back), so `qus unregister --all` still puts it back.
#[test]
fn records_of_replaced_entries_outlive_qus_dropping_its_own_for_a_while() {
    let sb = Sandbox::new();
    let emu = sb.install_emulator("aarch64");
    sb.search_bin("takeover = true\n");
    let other = require_qemu("aarch64");
    sb.register_raw(&format!(
        ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:{}:OCF",
        other.display()
    ));
    let theirs = sb.entry("qemu-aarch64").expect("the other tool's entry");
    let taken = |what: &str| {
        let out = sb.qus(&["register"]);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        let now = sb.entry("qemu-aarch64").unwrap_or_default();
        assert!(
            now.contains(&sb.bin().display().to_string()),
            "{what}: {now}"
        );
    };
    taken("first takeover");
    sb.qus_ok(&["disable", "aarch64"]);
    assert!(
        !sb.has_entry("qemu-aarch64"),
        "disabled: no entry for the arch"
    );
    sb.qus_ok(&["enable", "aarch64"]);
    taken("after disable + enable");
    fs::set_permissions(&emu, fs::Permissions::from_mode(0o775)).expect("chmod g+w");
    let _ = sb.qus(&["register"]);
    assert!(
        !sb.has_entry("qemu-aarch64"),
        "an emulator its group can write is refused"
    );
    fs::set_permissions(&emu, fs::Permissions::from_mode(0o755)).expect("chmod g-w");
    taken("after chmod g+w, g-w");
    let away = sb.path().join("away");
    fs::rename(&emu, &away).expect("move away");
    let _ = sb.qus(&["register"]);
    fs::rename(&away, &emu).expect("move back");
    taken("after the emulator moved away and back");
    // Gone for good (disabled), then unregister: the other entry is back.
    sb.qus_ok(&["disable", "aarch64"]);
    let out = sb.qus(&["unregister", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        sb.entry("qemu-aarch64").as_deref(),
        Some(theirs.as_str()),
        "{}",
        stderr(&out)
    );
    // And once it is back, qus keeps no record of it.
    assert_eq!(
        sb.status()["entries"]
            .as_array()
            .map(|e| e.iter().filter(|x| x["owned"] == true).count()),
        Some(0)
    );
}

/// Another handler that is registered but does not work (Rosetta
/// advertised, its runtime gone: podman#28181) is not yielded to: qus
/// registers its own and says why; `others = "yield-always"` keeps
/// yielding, and says the other fails.
#[test]
fn a_handler_that_fails_the_probe_is_not_yielded_to() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    let a = qus::arch::find("aarch64").expect("arch");
    sb.register_raw(&format!(
        ":rosetta:M::{}:{}:/bin/false:",
        qus::escape::escape_all(a.magic),
        qus::escape::escape_all(a.mask)
    ));
    assert_eq!(run_aarch64(&sb), "", "the broken handler ran the probe");
    let out = sb.qus(&["register"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        sb.has_entry("qemu-aarch64"),
        "qus yielded to a broken handler"
    );
    assert_eq!(run_aarch64(&sb), "qus-probe aarch64\n");
    let e = entry_json(&sb, "qemu-aarch64");
    let detail = e["detail"].as_str().unwrap_or_default().to_string();
    assert!(
        detail.contains("shadows rosetta") && detail.contains("fails the aarch64 probe"),
        "{e}"
    );
    // Stable: the next pass does not withdraw it (qus's own entry, now in
    // front, does not answer for the other handler).
    sb.qus_ok(&["register"]);
    assert!(sb.has_entry("qemu-aarch64"));
    // The user's choice: keep yielding.
    sb.search_bin("others = \"yield-always\"\n");
    sb.qus_ok(&["register"]);
    assert!(
        !sb.has_entry("qemu-aarch64"),
        "yield-always registered qus's"
    );
    let e = entry_json(&sb, "qemu-aarch64");
    assert_eq!(e["state"], "handled-by", "{e}");
    assert!(
        e["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("fails the aarch64 probe"),
        "{e}"
    );
}
