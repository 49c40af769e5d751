//! `qus test` and native detection: probes run through the real kernel.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{require_qemu, stdout, NotifySocket, Sandbox};

/// The `detail` of an arch's entry in `qus status --json`.
fn detail_of(status: &serde_json::Value, arch: &str) -> String {
    status["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["arch"] == arch)
        .and_then(|e| e["detail"].as_str().map(String::from))
        .unwrap_or_else(|| panic!("{arch} not in status: {status}"))
}

fn result_of(report: &serde_json::Value, arch: &str) -> (String, String) {
    let r = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["arch"] == arch)
        .unwrap_or_else(|| panic!("{arch} not in report: {report}"));
    (
        r["result"].as_str().unwrap_or("").to_string(),
        r["detail"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn every_emulator_of_qemu_user_static_passes() {
    let sb = Sandbox::new();
    require_qemu("aarch64");
    sb.write_config("10.toml", "[qemu]\nsearch_path = [\"/usr/bin\"]\n");
    sb.qus_ok(&["register"]);
    let out = sb.qus(&["test", "--json"]);
    assert!(out.status.success(), "qus test failed:\n{}", stdout(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let results = report["results"].as_array().expect("results");
    // Every arch with an emulator in /usr/bin and a probe (hexagon's
    // included): 31 pass, 3 native.
    let passed: Vec<&str> = results
        .iter()
        .filter(|r| r["result"] == "pass")
        .filter_map(|r| r["arch"].as_str())
        .collect();
    for p in qus::probe::PROBES {
        let a = qus::arch::find(p.arch).expect("arch");
        if a.family == "i386" {
            assert_eq!(result_of(&report, p.arch).0, "native", "{}", p.arch);
        } else {
            assert!(
                passed.contains(&p.arch),
                "{} did not pass: {report}",
                p.arch
            );
            let r = results.iter().find(|r| r["arch"] == p.arch).expect("r");
            assert_eq!(r["entry"], format!("qemu-{}", p.arch));
        }
    }
    assert_eq!(report["summary"]["pass"], 31);
    assert_eq!(report["summary"]["native"], 3);
    assert!(stdout(&sb.qus(&["test"])).contains("31 pass"));
}

#[test]
fn broken_emulators_fail_with_the_right_reason() {
    let sb = Sandbox::new();
    let script = |name: &str, body: &str| {
        let p = sb.bin().join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("script");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    };
    let exit1 = script("exit1", "exit 1");
    let crash = script("crash", "kill -SEGV $$");
    let wrong = script("wrong", "echo not-the-probe");
    let hang = script("hang", "exec sleep 100");
    sb.write_config(
        "10.toml",
        &format!(
            "[qemu]\nsearch_path = [\"{}\"]\n\
             [qemu.arch.aarch64]\ninterpreter = \"{}\"\n\
             [qemu.arch.arm]\ninterpreter = \"{}\"\n\
             [qemu.arch.riscv64]\ninterpreter = \"{}\"\n\
             [qemu.arch.s390x]\ninterpreter = \"{}\"\n",
            sb.bin().display(),
            exit1.display(),
            crash.display(),
            wrong.display(),
            hang.display()
        ),
    );
    sb.qus_ok(&["register"]);
    let started = std::time::Instant::now();
    let out = sb.qus(&["test", "--json", "--timeout", "1"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "a hung probe held qus"
    );
    assert_eq!(out.status.code(), Some(1), "failures must exit 1");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let (r, d) = result_of(&report, "aarch64");
    assert_eq!(
        (r.as_str(), d.contains("exited with status 1")),
        ("fail", true),
        "{d}"
    );
    let (r, d) = result_of(&report, "arm");
    assert_eq!(
        (r.as_str(), d.contains("crashed with signal 11 (SIGSEGV)")),
        ("fail", true),
        "{d}"
    );
    let (r, d) = result_of(&report, "riscv64");
    assert_eq!(
        (r.as_str(), d.contains("wrong output")),
        ("fail", true),
        "{d}"
    );
    assert!(d.contains("not-the-probe"), "{d}");
    let (r, d) = result_of(&report, "s390x");
    assert_eq!((r.as_str(), d.contains("timed out")), ("fail", true), "{d}");
    // An arch with no entry.
    let out = sb.qus(&["test", "--json", "ppc64le"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(result_of(&report, "ppc64le").0, "not-registered");
}

#[test]
fn native_is_decided_by_the_kernels_own_loader() {
    let sb = Sandbox::new();
    require_qemu("aarch64");
    sb.write_config("10.toml", "[qemu]\nsearch_path = [\"/usr/bin\"]\n");
    // This x86_64 host runs x86_64 (and i386) programs itself.
    let s = sb.status();
    let x = s["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["arch"] == "x86_64")
        .expect("x86_64")
        .clone();
    assert_eq!(x["state"], "native");
    // The kernel's own arch needs no question; i386 is asked of the kernel
    // for real (an x86_64 kernel may lack ia32 emulation, or have it off):
    // its loader takes the header; i486 shares i386's answer.
    assert_eq!(
        detail_of(&s, "x86_64"),
        "the kernel's own arch (x86_64)",
        "{x}"
    );
    assert_eq!(
        detail_of(&s, "i386"),
        "the kernel loads i386 programs itself"
    );
    assert_eq!(
        detail_of(&s, "i486"),
        "loaded like i386, which runs natively"
    );

    // Pretend the host is an aarch64 machine: its family (arm, aarch64)
    // cannot really run here, the probes prove it, and the emulators get
    // registered; x86_64 stays native because it really is.
    let out = sb.qus_on("aarch64", &["register"]);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("arm is not native here: the host cannot run arm binaries"),
        "{log}"
    );
    let entries = sb.entries();
    assert!(entries.contains(&"qemu-arm".to_string()), "{entries:?}");
    assert!(entries.contains(&"qemu-aarch64".to_string()), "{entries:?}");
    assert!(!entries.contains(&"qemu-x86_64".to_string()), "{entries:?}");
    let out = sb.qus_on("aarch64", &["test", "arm", "aarch64", "x86_64"]);
    assert!(out.status.success(), "{}", stdout(&out));
    // Stable on the next run: qus's own entry catches the arm probe now,
    // and that means "not native", not "native".
    let out = sb.qus_on("aarch64", &["register"]);
    assert!(stdout(&out).contains(" 0 writes"), "{}", stdout(&out));
}

/// `qus status --json` run in a pid namespace of its own whose
/// `vm.memfd_noexec` (a per-pid-namespace sysctl) is `level`.
fn status_with_memfd_noexec(sb: &Sandbox, level: &str) -> (serde_json::Value, String) {
    let qus = sb.tool(common::QUS);
    let args: Vec<_> = qus.get_args().skip_while(|a| *a != "--").skip(1).collect();
    let out = sb
        .command("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c"])
        .arg("echo \"$0\" > /proc/sys/vm/memfd_noexec && exec \"$@\" --log-level debug status --json")
        .arg(level)
        .args(args)
        .output()
        .expect("unshare");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    (serde_json::from_slice(&out.stdout).expect("json"), log)
}

#[test]
fn native_verdicts_hold_where_memfds_are_not_executable_by_default() {
    let sb = Sandbox::new();
    // 1: memfds are sealed against exec unless created with MFD_EXEC,
    // which qus asks for: the kernel still answers.
    let (s, log) = status_with_memfd_noexec(&sb, "1");
    assert_eq!(
        detail_of(&s, "i386"),
        "the kernel loads i386 programs itself",
        "{log}"
    );
    // Asked by qus itself, which is cheaper than a cache: none is kept.
    assert!(!sb.state().join("native.json").exists());
    // 2: no memfd may be executed at all; neither the question nor the
    // probe can run, so the family rule decides, and qus says why.
    let (s, log) = status_with_memfd_noexec(&sb, "2");
    assert_eq!(
        detail_of(&s, "i386"),
        "host x86_64 runs i386 natively (family rule)",
        "{log}"
    );
    assert!(
        log.contains("the i386 probe failed natively") && log.contains("Permission denied"),
        "{log}"
    );
    // A verdict that took a probe holds for the boot: kept, and the next
    // run takes it from there (no probe, so no such warning).
    assert!(sb.state().join("native.json").exists());
    let (s, log) = status_with_memfd_noexec(&sb, "2");
    assert_eq!(
        detail_of(&s, "i386"),
        "host x86_64 runs i386 natively (family rule)",
        "{log}"
    );
    assert!(!log.contains("the i386 probe failed natively"), "{log}");
}

#[test]
fn an_entry_taking_the_loader_question_is_never_run_by_qus_itself() {
    // The kernel is asked with a header whose last e_ident padding byte is
    // set. An entry that takes exactly that (and not real programs) must
    // not get qus's own process: qus asks in a child then, the entry's
    // interpreter starts there and is killed, and the family rule decides
    // for now.
    let sb = Sandbox::new();
    sb.write_config(
        "10.toml",
        &format!(
            "[qemu]\nsearch_path = [\"{}\"]\n[entry.takes-the-question]\n\
             magic = \"\\\\x7fELF\\\\x01\\\\x01\\\\x01\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00\\\\x00\\\\x01\"\n\
             interpreter = \"/usr/bin/sleep\"\n",
            sb.bin().display()
        ),
    );
    sb.qus_ok(&["register"]);
    assert_eq!(sb.entries(), ["takes-the-question"]);
    // The first run asked in-process (the entry was not there yet): nothing
    // cached, so the next run asks again, with the entry in place.
    assert!(!sb.state().join("native.json").exists());
    let out = sb.qus(&["--log-level", "debug", "status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        detail_of(&s, "i386"),
        "host x86_64 runs i386 natively (family rule)"
    );
    // Not kept: the next run asks again.
    assert!(!sb.state().join("native.json").exists());
}

#[test]
fn config_override_registers_a_native_arch() {
    let sb = Sandbox::new();
    require_qemu("i386");
    sb.write_config(
        "10.toml",
        "[qemu]\nsearch_path = [\"/usr/bin\"]\ntargets = [\"i386\"]\n[qemu.arch.i386]\nenabled = true\n",
    );
    sb.qus_ok(&["register"]);
    assert_eq!(sb.entries(), ["qemu-i386"]);
    let out = sb.qus(&["test", "--json", "i386"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let r = &report["results"][0];
    assert_eq!(r["result"], "pass", "{report}");
    assert_eq!(r["entry"], "qemu-i386");
}

#[test]
fn qusd_verifies_new_registrations_when_asked() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    let bad = sb.bin().join("qemu-arm-static");
    fs::write(&bad, "#!/bin/sh\nexit 3\n").expect("bad emulator");
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o755)).expect("chmod");
    sb.write_config(
        "10.toml",
        &format!(
            "[qemu]\nsearch_path = [\"{}\"]\n[daemon]\nverify = true\n",
            sb.bin().display()
        ),
    );
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd(Some(&n), &[]);
    let ready = n.wait(20, "READY=1", |m| m.contains("READY=1"));
    assert!(
        ready.contains("verified 1, verification FAILED: qemu-arm"),
        "{ready}"
    );
    let log = d.log_text();
    assert!(
        log.contains("verified qemu-aarch64: the aarch64 probe ran"),
        "{log}"
    );
    assert!(
        log.contains("verification of qemu-arm failed: exited with status 3"),
        "{log}"
    );
}
