//! Configuration cases as data (`tests/config-cases/NN-name/`): each
//! case's drop-ins in up to three configuration directories (`lib/`,
//! `run/`, `etc/`, lowest priority first), and what the real `qus config`
//! prints for them in `expected`. Adding a case takes no Rust. See
//! `tests/config-cases/README.md`.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/config-cases");
const DIRS: [&str; 3] = ["lib", "run", "etc"];

/// Copy a case's tree to a private directory: the checkout's files may
/// belong to whoever cloned it, and qus refuses configuration files that
/// someone other than root (or the caller) owns or may write.
fn copy_case(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).expect("chmod");
    for entry in fs::read_dir(from).expect("read case dir") {
        let entry = entry.expect("dir entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = fs::symlink_metadata(&src).expect("lstat");
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&src).expect("readlink");
            std::os::unix::fs::symlink(target, &dst).expect("symlink");
        } else if meta.is_dir() {
            copy_case(&src, &dst);
        } else {
            fs::copy(&src, &dst).expect("copy");
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
}

/// What `qus config` prints for a case, with the case's path as `CASE`.
fn run_case(case: &Path) -> String {
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("case");
    copy_case(case, &root);
    let mut cmd = Command::new(qus_bin());
    for d in DIRS {
        // Directories given by name must exist; a case leaves out the
        // ones it puts nothing in.
        fs::create_dir_all(root.join(d)).expect("mkdir");
        cmd.arg("--config-dir").arg(root.join(d));
    }
    cmd.args(["--state-dir", "/run/qusd-config-cases", "config"])
        .env_remove("QUS_CONFIG_DIRS")
        .env_remove("QUS_STATE_DIR")
        .env_remove("QUS_BINFMT_MISC");
    let out = output_within(&mut cmd, 30, "qus config");
    let mut text = String::new();
    let _ = writeln!(text, "exit {}", out.status.code().unwrap_or(-1));
    let _ = writeln!(text, "--- stdout");
    text.push_str(&stdout(&out));
    let _ = writeln!(text, "--- stderr");
    text.push_str(&stderr(&out));
    text.replace(&root.display().to_string(), "CASE")
}

#[test]
fn every_config_case_prints_what_it_expects() {
    let mut cases: Vec<PathBuf> = fs::read_dir(CASES)
        .expect("tests/config-cases")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 16, "cases: {cases:?}");
    let bless = std::env::var_os("QUS_BLESS").is_some();
    let mut failed = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap_or_default().to_string_lossy();
        let got = run_case(case);
        let expected_path = case.join("expected");
        match fs::read_to_string(&expected_path) {
            Ok(want) if want == got => {}
            Ok(want) => failed.push(format!(
                "{name}: qus config printed\n{got}\n--- but expected ({})\n{want}",
                expected_path.display()
            )),
            Err(_) if bless => fs::write(&expected_path, &got).expect("write expected"),
            Err(e) => failed.push(format!(
                "{name}: no {} ({e}); QUS_BLESS=1 writes it from this run:\n{got}",
                expected_path.display()
            )),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// The runner itself: what it compares is what the case holds (its
/// values, their file and line), and two cases differ.
#[test]
fn the_runner_sees_what_each_case_holds() {
    let got = run_case(&Path::new(CASES).join("02-one-value"));
    assert!(got.starts_with("exit 0\n"), "{got}");
    assert!(
        got.contains("exclude = [\"s390x\"]") && got.contains("CASE/etc/50-exclude.toml:2"),
        "{got}"
    );
    let other = run_case(&Path::new(CASES).join("04-list-replaces"));
    assert_ne!(got, other);
}
