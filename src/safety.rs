//! Who may have written an interpreter or config file.
//!
//! An interpreter registered with `C` runs with the credentials of setuid
//! binaries; one a non-root user could change would be a root hole. So an
//! interpreter must be a regular executable file owned by root, not writable
//! by group or others, and every directory on the way to it (through
//! symlinks too) must be root's and not writable by others — except a
//! sticky directory like `/tmp`, where others cannot replace root's files.
//!
//! In a non-initial user namespace the host's root shows up as the overflow
//! uid (usually 65534) and its files cannot be written from inside: those
//! count as root's, or qus could not use `/usr/bin/qemu-*` there.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

/// The uid that unmapped owners show up as (`/proc/sys/kernel/overflowuid`).
pub fn overflow_uid() -> u32 {
    static UID: OnceLock<u32> = OnceLock::new();
    *UID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/overflowuid")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(65534)
    })
}

/// Root, or the host's root as seen from inside a user namespace.
pub fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == overflow_uid()
}

/// Why an interpreter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Verdicts on directories already checked during one pass: 32 emulators
/// in /usr/bin share every ancestor, so each directory is checked once.
#[derive(Debug, Default)]
pub struct DirCache(std::cell::RefCell<std::collections::HashMap<PathBuf, Result<(), Refusal>>>);

/// Check an interpreter and return the resolved file it names, sharing
/// directory verdicts through `cache`.
pub fn check_interpreter(path: &Path, cache: &DirCache) -> Result<PathBuf, Refusal> {
    if !path.is_absolute() {
        return Err(Refusal(format!(
            "{} is not an absolute path",
            path.display()
        )));
    }
    // A symlink's owner decides where it points (in a sticky directory,
    // only that owner can replace it): it must be root's too. (Found by the
    // hostile-input tests: a user's link in /tmp passed.)
    if let Ok(link) = std::fs::symlink_metadata(path) {
        if link.file_type().is_symlink() && !trusted_owner(link.uid()) {
            return Err(Refusal(format!(
                "{} is a symlink owned by uid {}, not root",
                path.display(),
                link.uid()
            )));
        }
    }
    let resolved =
        std::fs::canonicalize(path).map_err(|e| Refusal(format!("{}: {e}", path.display())))?;
    let meta = std::fs::metadata(&resolved)
        .map_err(|e| Refusal(format!("{}: {e}", resolved.display())))?;
    if !meta.is_file() {
        return Err(Refusal(format!(
            "{} is not a regular file",
            resolved.display()
        )));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Refusal(format!("{} is not executable", resolved.display())));
    }
    if !trusted_owner(meta.uid()) {
        return Err(Refusal(format!(
            "{} is owned by uid {}, not root",
            resolved.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Refusal(format!(
            "{} is writable by group or others (mode {:o})",
            resolved.display(),
            meta.mode() & 0o7777
        )));
    }
    // The directories holding the name we were given (a symlink may live
    // there) and those holding the file it resolves to.
    for dir in [path.parent(), resolved.parent()].into_iter().flatten() {
        let known = cache.0.borrow().get(dir).cloned();
        let verdict = match known {
            Some(v) => v,
            None => {
                let v = check_directories(dir);
                cache.0.borrow_mut().insert(dir.to_path_buf(), v.clone());
                v
            }
        };
        verdict?;
    }
    Ok(resolved)
}

/// Every directory from `/` down to `dir` must be root's and not writable
/// by others, unless sticky (then others cannot swap root's entries).
fn check_directories(dir: &Path) -> Result<(), Refusal> {
    let mut current = PathBuf::new();
    for component in dir.components() {
        match component {
            Component::RootDir => current.push("/"),
            Component::Normal(c) => current.push(c),
            Component::ParentDir => {
                current.pop();
                continue;
            }
            _ => continue,
        }
        // symlink_metadata: a symlinked directory is checked where it
        // points by the resolved-path pass; here we check what it is.
        let meta = match std::fs::symlink_metadata(&current) {
            Ok(m) => m,
            Err(e) => return Err(Refusal(format!("{}: {e}", current.display()))),
        };
        if meta.file_type().is_symlink() {
            // Whoever owns the link decides where it points.
            if !trusted_owner(meta.uid()) {
                return Err(Refusal(format!(
                    "{} is a symlink owned by uid {}, not root",
                    current.display(),
                    meta.uid()
                )));
            }
            continue;
        }
        if !trusted_owner(meta.uid()) {
            return Err(Refusal(format!(
                "directory {} is owned by uid {}, not root",
                current.display(),
                meta.uid()
            )));
        }
        let mode = meta.mode();
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky {
            return Err(Refusal(format!(
                "directory {} is writable by group or others (mode {:o})",
                current.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}
