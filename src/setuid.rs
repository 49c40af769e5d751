//! Does a setuid foreign program get its privileges? Only with the `C`
//! flag: without it binfmt_misc runs the emulator with the caller's
//! credentials and the program's setuid bit means nothing, which is why
//! `sudo` fails in emulated containers registered with `PF`.
//!
//! `qus test` checks it for real on aarch64 (the arch most emulated
//! containers are): it installs a tiny aarch64 program that prints its
//! effective uid, setuid root, on a file system that honours setuid, and
//! runs it as another user.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

/// The aarch64 program: prints `euid=root` or `euid=user`.
const PROGRAM: &[u8] = include_bytes!("../probes/bin/setuid-aarch64");

/// The arch the setuid probe is for.
pub const ARCH: &str = "aarch64";

/// What the setuid probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "detail")]
pub enum Setuid {
    /// The program ran with its owner's (root's) uid: `C` is in effect.
    Works,
    /// It ran as the caller: setuid programs need the `C` flag.
    NeedsC,
    /// Could not be checked here, and why.
    NotChecked(String),
}

/// Run the setuid probe through whatever entry catches aarch64 programs,
/// as `uid`, within `timeout`.
pub fn check(uid: u32, timeout: Duration) -> Setuid {
    if !rustix::process::geteuid().is_root() {
        return Setuid::NotChecked("needs root to install a setuid program".into());
    }
    let place = crate::userns::here();
    if !place.initial
        && !place
            .uid_map
            .iter()
            .any(|r| r.to_outside(u64::from(uid)).is_some())
    {
        return Setuid::NotChecked(format!(
            "uid {uid} is not mapped in this user namespace; --setuid-user picks another"
        ));
    }
    let Some(dir) = suid_capable_dir() else {
        return Setuid::NotChecked(
            "no temporary directory on a file system that honours setuid (all nosuid)".into(),
        );
    };
    let result = run_in(&dir, uid, timeout);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(dir: &Path, uid: u32, timeout: Duration) -> Setuid {
    let program = dir.join("setuid-aarch64");
    let written = std::fs::write(&program, PROGRAM)
        .and_then(|()| std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o4755)));
    if let Err(e) = written {
        return Setuid::NotChecked(format!("cannot install {}: {e}", program.display()));
    }
    let mut cmd = Command::new(&program);
    cmd.uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    match crate::child::output_within(&mut cmd, timeout) {
        Err(e) => Setuid::NotChecked(format!("cannot run it as uid {uid}: {e}")),
        Ok(out) => match out.trim() {
            "euid=root" => Setuid::Works,
            "euid=user" => Setuid::NeedsC,
            other => Setuid::NotChecked(format!("unexpected output {other:?}")),
        },
    }
}

/// A fresh directory (mode 0711: others may run what is in it, not list
/// it) on a file system mounted without `nosuid`.
fn suid_capable_dir() -> Option<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("qus-setuid-{}-{nanos}", std::process::id());
    [
        std::env::temp_dir(),
        PathBuf::from("/var/tmp"),
        PathBuf::from("/tmp"),
    ]
    .into_iter()
    .filter(|base| {
        rustix::fs::statvfs(base)
            .is_ok_and(|s| !s.f_flag.contains(rustix::fs::StatVfsMountFlags::NOSUID))
    })
    .find_map(|base| {
        let dir = base.join(&name);
        std::fs::DirBuilder::new()
            .mode(0o711)
            .create(&dir)
            .ok()
            .map(|()| dir)
    })
}
