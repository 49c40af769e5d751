//! What qusd watches with inotify, and what each event means.
//!
//! - the binfmt_misc directory: a registration shows as MODIFY of
//!   `register`, a removal as DELETE, an enable/disable as MODIFY of the
//!   entry or of `status`; an unmount as UNMOUNT;
//! - every directory an emulator or interpreter may live in (search path,
//!   overrides, custom entries, symlink targets): only names that can be an
//!   emulator count, and a regular file counts once it is complete
//!   (CLOSE_WRITE or MOVED_TO), never on CREATE/MODIFY;
//! - every configuration directory, including the Kubernetes ConfigMap
//!   layout where `..data` is a symlink swapped by rename;
//! - for a directory that does not exist yet, its nearest existing
//!   ancestor, so its creation is seen.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::{Event, EventMask, WatchDescriptor, WatchMask, Watches};

use super::events::{Change, EmulatorEvent, FileNow, Meaning, Targets, Trigger, Writes};

/// Why a directory is watched.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Binfmt,
    Emulators,
    Config,
    /// Nearest existing ancestor of a missing directory; `next` is the
    /// child on the way there.
    Ancestor {
        next: OsString,
        config: bool,
    },
}

const BINFMT_MASK: WatchMask = WatchMask::MODIFY
    .union(WatchMask::DELETE)
    .union(WatchMask::CREATE)
    .union(WatchMask::CLOSE_WRITE);
const FILES_MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::CREATE)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::MODIFY)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);
const CONFIG_MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::CREATE)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);
/// On the directory holding a link to a watched directory: the link
/// replaced (renamed over, removed and made again).
const LINK_MASK: WatchMask = ANCESTOR_MASK
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM);

const ANCESTOR_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);

/// The live watches and the little state events need.
pub struct WatchSet {
    watches: Watches,
    roles: HashMap<WatchDescriptor, (PathBuf, Vec<Role>)>,
    emulator_names: HashSet<OsString>,
    /// Emulator files being written: their entries wait, but never
    /// forever (see [`super::events`]).
    writes: Writes,
    /// Entry names binfmt_misc reported removed since the last look (see
    /// [`super::rules::flushed`]).
    vanished: std::collections::BTreeSet<String>,
}

impl WatchSet {
    /// The entry names removed from binfmt_misc since the last call.
    pub fn take_vanished(&mut self) -> std::collections::BTreeSet<String> {
        std::mem::take(&mut self.vanished)
    }

    /// The entry names removed since the last [`take_vanished`](Self::take_vanished), kept.
    pub fn vanished(&self) -> &std::collections::BTreeSet<String> {
        &self.vanished
    }

    pub fn new(watches: Watches) -> WatchSet {
        WatchSet {
            watches,
            roles: HashMap::new(),
            emulator_names: HashSet::new(),
            writes: Writes::default(),
            vanished: Default::default(),
        }
    }

    /// Is this emulator file being written? By path, so a file written in
    /// one directory holds back only an entry whose interpreter it is (not
    /// a same-named file elsewhere in the search path), also through
    /// symlinks: a candidate whose link target is being written waits too.
    pub fn writing(&self, candidate: &Path) -> bool {
        if self.writes.writing(candidate) {
            return true;
        }
        let Ok(target) = std::fs::canonicalize(candidate) else {
            return false;
        };
        self.writes.paths().any(|p| {
            p.parent()
                .and_then(|d| std::fs::canonicalize(d).ok())
                .zip(p.file_name())
                .is_some_and(|(d, n)| d.join(n) == target)
        })
    }

    /// Is any emulator file being written?
    pub fn any_writing(&self) -> bool {
        self.writes.any()
    }

    /// When the oldest quiet file in progress counts as complete.
    pub fn next_expiry(&self, quiet: Duration) -> Option<Instant> {
        self.writes.next_expiry(quiet)
    }

    /// Files with no write for `quiet` count as complete (see
    /// [`Writes::expire`]). Returns whether any expired.
    pub fn expire(&mut self, now: Instant, quiet: Duration) -> bool {
        let expired = self.writes.expire(now, quiet);
        for e in &expired {
            if e.never_chmodded {
                tracing::warn!(
                    "{}: written without execute permission and no chmod for {:.1} s; \
                     treating it as complete",
                    e.path.display(),
                    quiet.as_secs_f64()
                );
            } else {
                tracing::warn!(
                    "{}: no write for {:.1} s and no close seen; treating it as complete",
                    e.path.display(),
                    quiet.as_secs_f64()
                );
            }
        }
        !expired.is_empty()
    }

    /// How many directories are watched.
    pub fn len(&self) -> usize {
        self.roles.len()
    }

    /// (Re)build the watches for these targets. Idempotent: watching the
    /// same directory again keeps its descriptor.
    pub fn arm(&mut self, targets: &Targets) {
        let mut wanted: BTreeMap<PathBuf, (WatchMask, Vec<Role>)> = BTreeMap::new();
        let mut want = |path: PathBuf, mask: WatchMask, role: Role| {
            let slot = wanted.entry(path).or_insert((WatchMask::empty(), vec![]));
            slot.0 |= mask;
            if !slot.1.contains(&role) {
                slot.1.push(role);
            }
        };
        want(targets.binfmt.clone(), BINFMT_MASK, Role::Binfmt);
        for (dirs, mask, role, config) in [
            (&targets.emulator_dirs, FILES_MASK, Role::Emulators, false),
            (&targets.config_dirs, CONFIG_MASK, Role::Config, true),
        ] {
            for dir in dirs {
                if dir.is_dir() {
                    want(dir.clone(), mask, role.clone());
                } else if let Some((ancestor, next)) = nearest_existing_ancestor(dir) {
                    want(ancestor, ANCESTOR_MASK, Role::Ancestor { next, config });
                }
                // A directory given as a link (`/etc/qus.d -> cfgA`) is
                // re-pointed in its parent (`ln -s cfgB etc.new && mv -T
                // etc.new etc`), which the watch on cfgA never sees.
                for (parent, next) in link_hops(dir) {
                    want(parent, LINK_MASK, Role::Ancestor { next, config });
                }
            }
        }
        let mut roles: HashMap<WatchDescriptor, (PathBuf, Vec<Role>)> = HashMap::new();
        for (path, (mask, path_roles)) in wanted {
            // MASK_ADD: two paths may be one directory (/bin and /usr/bin).
            match self
                .watches
                .add(&path, mask | WatchMask::MASK_ADD | WatchMask::ONLYDIR)
            {
                Ok(wd) => {
                    tracing::debug!("watching {} ({path_roles:?})", path.display());
                    let slot = roles.entry(wd).or_insert((path.clone(), vec![]));
                    for r in path_roles {
                        if !slot.1.contains(&r) {
                            slot.1.push(r);
                        }
                    }
                }
                Err(e) => tracing::warn!(
                    "cannot watch {}: {e}; changes there are seen only on the next event or SIGHUP",
                    path.display()
                ),
            }
        }
        for old in self.roles.keys() {
            if !roles.contains_key(old) {
                let _ = self.watches.remove(old.clone());
            }
        }
        self.roles = roles;
        self.emulator_names = targets.emulator_names.clone();
    }

    /// Interpret one event.
    pub fn classify(&mut self, event: &Event<OsString>) -> Trigger {
        let mut t = Trigger::default();
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            tracing::warn!("inotify queue overflowed: events were lost; rescanning everything");
            return Trigger {
                config: true,
                files: true,
                kernel: true,
                rearm: true,
                overflow: true,
            };
        }
        let Some((dir, roles)) = self.roles.get(&event.wd).cloned() else {
            return t;
        };
        if event.mask.contains(EventMask::IGNORED) {
            // The watch is gone (directory removed, file system unmounted):
            // never silently stop watching.
            self.roles.remove(&event.wd);
            t.rearm = true;
        }
        for role in &roles {
            match role {
                Role::Binfmt => {
                    if event.mask.contains(EventMask::UNMOUNT) {
                        tracing::warn!("binfmt_misc at {} was unmounted", dir.display());
                        t.rearm = true;
                    }
                    if event.mask.contains(EventMask::DELETE) {
                        if let Some(name) = event.name.as_deref().and_then(|n| n.to_str()) {
                            self.vanished.insert(name.to_string());
                        }
                    }
                    t.kernel = true;
                }
                Role::Emulators => self.emulator_event(&dir, event, &mut t),
                Role::Config => config_event(&dir, event, &mut t),
                Role::Ancestor { next, config } => {
                    let self_event = event
                        .mask
                        .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF);
                    if self_event || event.name.as_deref() == Some(next.as_os_str()) {
                        t.rearm = true;
                        if *config {
                            t.config = true;
                        } else {
                            t.files = true;
                        }
                    }
                }
            }
        }
        t
    }

    /// An event in an emulator directory: what it is (one look at the
    /// file), then what it means ([`Writes::feed`]).
    fn emulator_event(&mut self, dir: &Path, event: &Event<OsString>, t: &mut Trigger) {
        let Some(seen) = self.emulator_seen(dir, event) else {
            return;
        };
        match self.writes.feed(seen, Instant::now()) {
            Meaning::Nothing => {}
            Meaning::FilesChanged => t.files = true,
            Meaning::DirGone => {
                t.files = true;
                t.rearm = true;
            }
            Meaning::AwaitingMode => tracing::info!(
                "{} written without execute permission; waiting for its chmod",
                event.name.as_deref().unwrap_or_default().to_string_lossy()
            ),
        }
    }

    /// The inotify event as [`super::events`] takes it; `None` for names
    /// that cannot be an emulator and events that say nothing here.
    fn emulator_seen(&self, dir: &Path, event: &Event<OsString>) -> Option<EmulatorEvent> {
        let m = event.mask;
        if m.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
            return Some(EmulatorEvent::DirGone);
        }
        let name = event.name.as_ref()?;
        if m.contains(EventMask::CLOSE_WRITE) {
            let tmpfile = name.to_str().and_then(|n| n.strip_prefix('#'));
            if let Some(ino) = tmpfile.and_then(|n| n.parse::<u64>().ok()) {
                return Some(EmulatorEvent::TmpfileClosed {
                    dir: dir.to_path_buf(),
                    ino,
                });
            }
        }
        if !self.emulator_names.contains(name) {
            return None;
        }
        let change = if m.contains(EventMask::CREATE) {
            Change::Create
        } else if m.contains(EventMask::MODIFY) {
            Change::Modify
        } else if m.contains(EventMask::CLOSE_WRITE) {
            Change::CloseWrite
        } else if m.intersects(EventMask::MOVED_TO | EventMask::MOVED_FROM | EventMask::DELETE) {
            Change::MovedOrDeleted
        } else if m.contains(EventMask::ATTRIB) {
            Change::Attrib
        } else {
            return None;
        };
        let path = dir.join(name);
        let now = file_now(&path);
        Some(EmulatorEvent::File { path, change, now })
    }
}

/// What a file is now, in one `lstat`. A regular file with one link may
/// be being written, whatever its size when the event is read: on a busy
/// machine qusd may read the CREATE of a `cp` after much of the data has
/// landed, so a non-empty file proves nothing.
fn file_now(path: &Path) -> FileNow {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => FileNow::Symlink,
        Ok(m) if m.is_file() && m.nlink() > 1 => FileNow::Linked,
        Ok(m) if m.is_file() => FileNow::Regular {
            ino: m.ino(),
            executable: m.mode() & 0o111 != 0,
        },
        Ok(_) => FileNow::Other,
        Err(_) => FileNow::Gone,
    }
}

fn config_event(dir: &Path, event: &Event<OsString>, t: &mut Trigger) {
    if event
        .mask
        .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
    {
        t.config = true;
        t.rearm = true;
        return;
    }
    let Some(name) = event.name.as_deref() else {
        return;
    };
    if !config_name_matters(name) {
        return;
    }
    // A regular file being created is not complete yet: CLOSE_WRITE follows.
    if event.mask.contains(EventMask::CREATE)
        && matches!(file_now(&dir.join(name)), FileNow::Regular { .. })
    {
        return;
    }
    t.config = true;
}

/// `*.toml` drop-ins, and the `..data`/`..TIMESTAMP` entries of a
/// Kubernetes ConfigMap volume; not editor swap files or other dotfiles.
fn config_name_matters(name: &OsStr) -> bool {
    let n = name.to_string_lossy();
    n.starts_with("..") || (!n.starts_with('.') && n.ends_with(".toml"))
}

/// Every link on the way from `path` to the directory it names, as
/// (the directory holding the link, the link's name): `path` itself when
/// it is a link, then each link it points through (at most 8).
fn link_hops(path: &Path) -> Vec<(PathBuf, OsString)> {
    let mut hops = Vec::new();
    let mut at = path.to_path_buf();
    for _ in 0..8 {
        let is_link = std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink());
        let (Some(parent), Some(name)) = (at.parent(), at.file_name()) else {
            break;
        };
        if !is_link {
            break;
        }
        hops.push((parent.to_path_buf(), name.to_owned()));
        let Ok(target) = std::fs::read_link(&at) else {
            break;
        };
        at = parent.join(target);
    }
    hops
}

/// The nearest existing ancestor of `dir` and the child name leading to it.
fn nearest_existing_ancestor(dir: &Path) -> Option<(PathBuf, OsString)> {
    let mut child = dir;
    while let Some(parent) = child.parent() {
        if parent.is_dir() {
            return child
                .file_name()
                .map(|n| (parent.to_path_buf(), n.to_owned()));
        }
        child = parent;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_that_matter() {
        assert!(config_name_matters(OsStr::new("50-x.toml")));
        assert!(config_name_matters(OsStr::new("..data")));
        assert!(config_name_matters(OsStr::new("..2026_11_26_21_00_00.1")));
        assert!(!config_name_matters(OsStr::new(".50-x.toml.swp")));
        assert!(!config_name_matters(OsStr::new("README")));
    }

    #[test]
    fn ancestor_of_a_missing_dir() {
        let t = tempfile::tempdir().expect("tempdir");
        let missing = t.path().join("a/b/c");
        let (anc, next) = nearest_existing_ancestor(&missing).expect("ancestor");
        assert_eq!(anc, t.path());
        assert_eq!(next, "a");
    }

    #[test]
    fn kernel_only_trigger() {
        let t = Trigger {
            kernel: true,
            ..Trigger::default()
        };
        assert!(t.kernel_only());
        let mut u = t;
        u.merge(Trigger {
            files: true,
            ..Trigger::default()
        });
        assert!(!u.kernel_only());
        assert!(u.reasons().contains("emulator files changed"));
    }
}
