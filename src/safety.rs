//! Who may have written an interpreter or config file.
//!
//! An interpreter registered with `C` runs with the credentials of setuid
//! binaries; one a non-root user could change would be a root hole. So an
//! interpreter must be a regular executable file owned by root and not
//! writable by group or others, reached only through directories and
//! symlinks that no one but root can change:
//!
//! - every directory on the way (through every symlink hop) is root's and
//!   not writable by others, except that a sticky directory like `/tmp`
//!   may be an *ancestor* (others cannot rename or remove root's entries
//!   there);
//! - the directory that directly holds the file, or a symlink hop, is
//!   root's and writable by nobody else, sticky or not;
//! - every symlink on the way is root's (its owner decides where it
//!   points).
//!
//! Owners: uid 0 is root. In the initial user namespace nothing else is:
//! uid 65534 there is the real `nobody` user. In a child user namespace,
//! every host user the namespace does not map (host root included) shows
//! as the overflow uid, and `stat` cannot tell them apart. qus then counts
//! an overflow-owned file or directory as root's, under the same mode
//! rules: that is what `/usr/bin` looks like from inside, and what a
//! rootless user needs. If the namespace maps the overflow uid itself to
//! another host user, it is a real user there and not trusted; mapped to
//! the namespace owner's own subordinate ids (rootless podman), it stays
//! trusted: such a file is host root's or the owner's. What qus cannot know in a child
//! namespace is whether an unmapped owner is host root or another unmapped
//! host user; `qus.d(5)` says so.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

/// The uid that unmapped owners show up as (`/proc/sys/kernel/overflowuid`).
fn overflow_uid() -> u32 {
    static UID: OnceLock<u32> = OnceLock::new();
    *UID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/overflowuid")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(65534)
    })
}

/// Is the overflow uid a real, mapped user here that is *not* under the
/// namespace owner's control? In the initial user namespace it always is
/// (`nobody`). In a child namespace it is when the `uid_map` maps it to
/// some other host user; when it maps to the owner's own subordinate ids
/// (rootless podman maps 65536 of them) a file showing it is either host
/// root's or the owner's, and both are trusted there.
fn overflow_uid_foreign() -> bool {
    static FOREIGN: OnceLock<bool> = OnceLock::new();
    *FOREIGN.get_or_init(|| {
        let place = crate::userns::here();
        if place.initial {
            return true;
        }
        let overflow = overflow_uid();
        let mapped = place
            .uid_map
            .iter()
            .any(|r| r.to_outside(u64::from(overflow)).is_some());
        mapped && !crate::userns::maps_to_user(place, overflow)
    })
}

/// Root, or an unmapped owner (the overflow uid where it is not a foreign
/// mapped user), which is how host root's files look from a child user
/// namespace.
pub fn trusted_owner(uid: u32) -> bool {
    uid == 0 || (uid == overflow_uid() && !overflow_uid_foreign())
}

/// Why an interpreter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How strictly a directory is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    /// On the way: sticky and world-writable is fine.
    Ancestor,
    /// Directly holds the file or a symlink hop: writable by root only.
    Holder,
}

/// Verdicts on directories already checked during one pass: 32 emulators
/// in /usr/bin share every ancestor, so each directory is checked once.
/// Resolved parent directories are kept too: the 64 candidate names in
/// `/usr/bin` and `/usr/local/bin` then cost one `lstat` each, not one per
/// path component.
#[derive(Debug, Default)]
pub struct DirCache {
    verdicts: std::cell::RefCell<HashMap<(PathBuf, Role), Result<(), Refusal>>>,
    parents: std::cell::RefCell<HashMap<PathBuf, Result<Resolved, Refusal>>>,
}

impl DirCache {
    fn check(&self, dir: &Path, role: Role) -> Result<(), Refusal> {
        let key = (dir.to_path_buf(), role);
        if let Some(v) = self.verdicts.borrow().get(&key) {
            return v.clone();
        }
        let v = check_directory(dir, role);
        self.verdicts.borrow_mut().insert(key, v.clone());
        v
    }

    /// A parent directory resolved hop by hop, once per pass.
    fn parent(&self, dir: &Path) -> Result<Resolved, Refusal> {
        if let Some(v) = self.parents.borrow().get(dir) {
            return v.clone();
        }
        let v = walk(dir, self, true).map(|(r, _)| r);
        self.parents
            .borrow_mut()
            .insert(dir.to_path_buf(), v.clone());
        v
    }
}

/// The most symlinks followed on one path (the kernel's limit is 40).
const MAX_HOPS: usize = 40;

/// A path resolved hop by hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The file it names in the end.
    pub file: PathBuf,
    /// The directories that hold the file or a symlink hop on the way:
    /// a change in any of them can change what the path names.
    pub holders: Vec<PathBuf>,
    /// Every symlink followed on the way, in order.
    pub links: Vec<PathBuf>,
}

/// Resolve `path` component by component, following every symlink, and
/// check every directory and link on the way (see the module docs).
pub fn resolve(path: &Path, cache: &DirCache) -> Result<Resolved, Refusal> {
    walk(path, cache, false).map(|(r, _)| r)
}

/// Resolve a directory path the same way: every link and every directory
/// on the way checked (directories as ancestors, the holders of links
/// strictly); returns the real directory it names, itself not judged.
fn resolve_dir(dir: &Path, cache: &DirCache) -> Result<PathBuf, Refusal> {
    walk(dir, cache, true).map(|(r, _)| r.file)
}

/// The walk behind [`resolve`] and [`resolve_dir`]. For a file, also the
/// `lstat` of the file it ends on (not a symlink, so the same as a `stat`):
/// the caller judges it without looking again.
fn walk(
    path: &Path,
    cache: &DirCache,
    want_dir: bool,
) -> Result<(Resolved, Option<std::fs::Metadata>), Refusal> {
    if !path.is_absolute() {
        return Err(Refusal(format!(
            "{} is not an absolute path",
            path.display()
        )));
    }
    let mut w = Walk::start(path, cache, want_dir)?;
    while let Some(name) = w.pending.pop_front() {
        if name == ".." {
            w.current.pop();
            continue;
        }
        let next = w.current.join(&name);
        let meta = std::fs::symlink_metadata(&next)
            .map_err(|e| Refusal(format!("{}: {e}", next.display())))?;
        if meta.file_type().is_symlink() {
            w.follow(path, next, &meta, cache)?;
            continue;
        }
        if w.pending.is_empty() && !want_dir {
            cache.check(&w.current, Role::Holder)?;
            let holder = w.current.clone();
            w.holders.push(holder);
            return Ok((w.found(next), Some(meta)));
        }
        if !meta.is_dir() {
            return Err(Refusal(format!("{} is not a directory", next.display())));
        }
        if w.pending.is_empty() {
            return Ok((w.found(next), None));
        }
        cache.check(&next, Role::Ancestor)?;
        w.current = next;
    }
    if want_dir {
        let here = w.current.clone();
        return Ok((w.found(here), None));
    }
    // The path named a directory ("/" or ending in "..").
    Err(Refusal(format!("{} is not a regular file", path.display())))
}

/// A walk in progress: where it is, what is left, and every directory
/// and link it went through.
struct Walk {
    current: PathBuf,
    pending: VecDeque<OsString>,
    holders: Vec<PathBuf>,
    links: Vec<PathBuf>,
    hops: usize,
}

impl Walk {
    /// From `/`; for a file in a directory, from the directory as resolved
    /// before (same checks, same holders and links, done once).
    fn start(path: &Path, cache: &DirCache, want_dir: bool) -> Result<Walk, Refusal> {
        let mut w = Walk {
            current: PathBuf::from("/"),
            pending: components(path),
            holders: Vec::new(),
            links: Vec::new(),
            hops: 0,
        };
        cache.check(&w.current, Role::Ancestor)?;
        if let (false, Some(parent), Some(name)) = (want_dir, path.parent(), path.file_name()) {
            if parent != Path::new("/") && w.pending.len() > 1 {
                let dir = cache.parent(parent)?;
                w.current = dir.file;
                w.holders = dir.holders;
                w.links = dir.links;
                w.hops = w.links.len();
                w.pending = VecDeque::from([name.to_owned()]);
                cache.check(&w.current, Role::Ancestor)?;
            }
        }
        Ok(w)
    }

    /// Follow the symlink `next` (of `path`): owned by root, held by a
    /// safe directory, and not one hop too many.
    fn follow(
        &mut self,
        path: &Path,
        next: PathBuf,
        meta: &std::fs::Metadata,
        cache: &DirCache,
    ) -> Result<(), Refusal> {
        self.hops += 1;
        if self.hops > MAX_HOPS {
            return Err(Refusal(format!(
                "{}: more than {MAX_HOPS} symlinks (a loop?)",
                path.display()
            )));
        }
        if !trusted_owner(meta.uid()) {
            return Err(Refusal(format!(
                "{} is a symlink owned by uid {}, not root",
                next.display(),
                meta.uid()
            )));
        }
        cache.check(&self.current, Role::Holder)?;
        self.holders.push(self.current.clone());
        let target =
            std::fs::read_link(&next).map_err(|e| Refusal(format!("{}: {e}", next.display())))?;
        self.links.push(next);
        if target.is_absolute() {
            self.current = PathBuf::from("/");
        }
        let mut rest = components(&target);
        rest.extend(std::mem::take(&mut self.pending));
        self.pending = rest;
        Ok(())
    }

    fn found(self, file: PathBuf) -> Resolved {
        Resolved {
            file,
            holders: self.holders,
            links: self.links,
        }
    }
}

/// The normal components of a path, `..` kept, `.` dropped.
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Check an interpreter; returns the resolved file it names and that
/// file's metadata (from the walk: one `lstat` for the whole check).
pub fn check_interpreter(
    path: &Path,
    cache: &DirCache,
) -> Result<(PathBuf, std::fs::Metadata), Refusal> {
    let (found, meta) = walk(path, cache, false)?;
    let resolved = found.file;
    let Some(meta) = meta else {
        return Err(Refusal(format!("{} is not a regular file", path.display())));
    };
    if !meta.is_file() {
        return Err(Refusal(format!(
            "{} is not a regular file",
            resolved.display()
        )));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Refusal(format!("{} is not executable", resolved.display())));
    }
    check_owner_and_mode(&resolved, &meta, "")?;
    Ok((resolved, meta))
}

/// Root's (see [`trusted_owner`]) and not writable by group or others.
fn check_owner_and_mode(path: &Path, meta: &std::fs::Metadata, what: &str) -> Result<(), Refusal> {
    if !trusted_owner(meta.uid()) {
        return Err(Refusal(format!(
            "{what}{} is owned by uid {}, not root",
            path.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Refusal(format!(
            "{what}{} is writable by group or others (mode {:o})",
            path.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

fn check_directory(dir: &Path, role: Role) -> Result<(), Refusal> {
    let meta =
        std::fs::symlink_metadata(dir).map_err(|e| Refusal(format!("{}: {e}", dir.display())))?;
    let sticky = meta.mode() & 0o1000 != 0;
    if role == Role::Ancestor && sticky && trusted_owner(meta.uid()) {
        return Ok(());
    }
    check_owner_and_mode(dir, &meta, "directory ").map_err(|r| {
        if sticky && role == Role::Holder {
            Refusal(format!(
                "{r}; a sticky directory may be on the way, but not hold the file or a link"
            ))
        } else {
            r
        }
    })
}

/// Check a configuration directory and every directory above it: all
/// root's and writable by nobody else (sticky ancestors allowed). A
/// Kubernetes ConfigMap volume is the one exception: its top directory may
/// be writable by others (kubelet makes it so), and then only its
/// `NAME -> ..data/NAME` files count (see the config scanner).
pub fn check_config_dir(dir: &Path) -> Result<ConfigDir, Refusal> {
    let cache = DirCache::default();
    // The directories above it, every hop included; the directory itself
    // may be a link (root's, in a directory only root can write).
    let real = resolve_dir(dir, &cache)?;
    match check_directory(&real, Role::Holder) {
        Ok(()) => Ok(ConfigDir::Strict),
        Err(r) => {
            let data = real.join("..data");
            match std::fs::symlink_metadata(&data) {
                Ok(m) if m.file_type().is_symlink() && trusted_owner(m.uid()) => {
                    let meta = std::fs::symlink_metadata(&real)
                        .map_err(|e| Refusal(format!("{}: {e}", real.display())))?;
                    if !trusted_owner(meta.uid()) {
                        return Err(r);
                    }
                    Ok(ConfigDir::ConfigMap)
                }
                _ => Err(r),
            }
        }
    }
}

/// Check a directory that holds files qus trusts: every directory above
/// it as an ancestor (every hop included), itself as a holder.
pub fn check_holder_dir(dir: &Path) -> Result<(), Refusal> {
    let cache = DirCache::default();
    let real = resolve_dir(dir, &cache)?;
    check_directory(&real, Role::Holder)
}

/// Check one directory that holds files qus trusts, not those above it.
pub fn check_dir_itself(dir: &Path) -> Result<(), Refusal> {
    check_directory(dir, Role::Holder)
}

/// How a configuration directory was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigDir {
    /// Root's and writable by root only: every drop-in in it counts.
    Strict,
    /// A Kubernetes ConfigMap volume whose top directory others may write:
    /// only root-owned `NAME -> ..data/NAME` links count.
    ConfigMap,
}
