//! Does a setuid foreign program get its privileges? Only with the `C`
//! flag: without it binfmt_misc runs the emulator with the caller's
//! credentials and the program's setuid bit means nothing, which is why
//! `sudo` fails in emulated containers registered with `PF`.
//!
//! `qus test` checks it for real on aarch64 (the arch most emulated
//! containers are): it installs a tiny aarch64 program that prints its
//! effective uid, setuid root, on a tmpfs only the probe can see, and runs
//! it as another user with an empty environment.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

/// The aarch64 program: prints `euid=root` or `euid=user`.
const PROGRAM: &[u8] = include_bytes!("../../../probes/bin/setuid-aarch64");

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
///
/// Under `C` the probe is a setuid-root program that runs foreign code as
/// root with the caller's environment, so it must be reachable by no one
/// but the probe run: it lives on a tmpfs mounted in a mount namespace of
/// its own (a thread's, never the host's), over an empty root-only
/// directory. Others see that empty directory and nothing else; the only
/// processes in the namespace are qus (root) and the probe, which is not
/// ptraceable and has no `/proc/PID/root` for others to enter (changing
/// uid, and then a setuid exec, make it non-dumpable).
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
    let Some(mount_point) = private_dir() else {
        return Setuid::NotChecked("cannot create a private temporary directory".into());
    };
    let inside = mount_point.clone();
    let result = std::thread::spawn(move || in_private_mount(&inside, uid, timeout))
        .join()
        .unwrap_or_else(|_| Setuid::NotChecked("the probe thread panicked".into()));
    // The tmpfs went with the thread's namespace: the directory is empty.
    let _ = std::fs::remove_dir(&mount_point);
    result
}

/// On this thread only: a mount namespace of its own, nothing in it
/// propagating back, and a setuid-capable tmpfs over `dir`.
fn in_private_mount(dir: &Path, uid: u32, timeout: Duration) -> Setuid {
    use rustix::mount::{MountFlags, MountPropagationFlags};
    // SAFETY: only NEWNS (and the FS it implies): no file descriptor
    // table is unshared, so no other thread loses a descriptor.
    let unshared = unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) };
    if let Err(e) = unshared {
        return Setuid::NotChecked(format!("cannot make a private mount namespace: {e}"));
    }
    if let Err(e) = rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    ) {
        return Setuid::NotChecked(format!("cannot make mounts private: {e}"));
    }
    if let Err(e) = rustix::mount::mount(
        "qus-setuid",
        dir,
        "tmpfs",
        MountFlags::NODEV,
        c"mode=0711,size=1m",
    ) {
        return Setuid::NotChecked(format!("cannot mount a tmpfs on {}: {e}", dir.display()));
    }
    run_in(dir, uid, timeout)
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
        .env_clear()
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

/// A fresh, empty directory only root may enter (mode 0700): the mount
/// point, all anyone else ever sees of the probe.
fn private_dir() -> Option<PathBuf> {
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
    .find_map(|base| {
        let dir = base.join(&name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .ok()
            .map(|()| dir)
    })
}
