//! End to end: real qemu-user-static, registered by the real `qus`, runs
//! real foreign programs through a private binfmt_misc instance.

mod common;

use common::{require_qemu, Sandbox};
use qus::probe::PROBES;

#[test]
fn foreign_programs_run_after_qus_register() {
    let sb = Sandbox::new();
    for p in PROBES {
        let arch = qus::arch::find(p.arch).expect("probe arch in table");
        if arch.family != "i386" {
            require_qemu(arch.emulator);
        }
    }
    sb.write_config("10-usr-bin.toml", "[qemu]\nsearch_path = [\"/usr/bin\"]\n");
    // Before registering, the kernel cannot run them.
    let before = sb.run_program(
        "probe-aarch64",
        qus::probe::find("aarch64").expect("probe").program,
    );
    assert!(!before.status.success(), "aarch64 ran without an entry?");
    sb.qus_ok(&["register"]);
    for p in PROBES {
        let out = sb.run_program(&format!("probe-{}", p.arch), p.program);
        assert!(
            out.status.success(),
            "{}: {:?} {}",
            p.arch,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            p.expected_output(),
            "{}",
            p.arch
        );
    }
}

/// The defaults users get: `P` (argv[0] preserved) and `F` (emulator opened
/// at registration, so it works in chroots and containers without it).
#[test]
fn default_flags_are_preserve_argv0_and_fix_binary() {
    let sb = Sandbox::new();
    require_qemu("riscv64");
    sb.write_config(
        "10-usr-bin.toml",
        "[qemu]\nsearch_path = [\"/usr/bin\"]\ntargets = [\"riscv64\"]\n",
    );
    sb.qus_ok(&["register"]);
    let e = sb.entry("qemu-riscv64").expect("entry");
    assert!(e.contains("flags: PF"), "{e}");
    assert!(
        e.contains("interpreter /usr/bin/qemu-riscv64-static"),
        "{e}"
    );
}
