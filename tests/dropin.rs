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
