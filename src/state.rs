//! The state directory: ownership records, the lock that serialises `qus`
//! and `qusd`, the native-verdict cache and the daemon's published status.
//!
//! `owned.json` lists the entries qus registered or adopted, with the
//! register string and the interpreter identity at that time. It lives in
//! `/run` by default: binfmt_misc entries do not survive a reboot either.
//! A missing or unreadable file means "nothing owned yet": qus then adopts
//! identical entries instead of touching anything else.
//!
//! The records decide what qus may remove, so nobody but the caller may be
//! able to change them: the directory must belong to the caller and be
//! writable by nobody else, it is created 0700 and its files 0600 whatever
//! the umask, and no link inside it is ever followed. A read-only state
//! dir (a read-only bind mount, a rootless user pointed at `/run/qusd`) is
//! not an error: qus then works without records and says so.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::binfmt::entry::parse_register_line;
use rustix::fs::OFlags;

use crate::dirfd::Dir;
use crate::fsutil::with_path;
use crate::model::{Identity, NativeVerdicts, Owned, OwnedEntries};

const FILE: &str = "owned.json";
const LOCK: &str = "lock";
const DAEMON_FILE: &str = "qusd.json";
const NATIVE_FILE: &str = "native.json";
const PID_FILE: &str = "qusd.pid";
const VERSIONS_FILE: &str = "versions.json";

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    entries: std::collections::BTreeMap<String, Record>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    arch: Option<String>,
    /// The register string qus wrote (or would have written).
    register: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<Identity>,
    /// The register string of the entry qus took the name over from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replaced: Option<String>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

/// The outcome of taking the lock.
#[derive(Debug)]
pub enum Lock {
    /// Held until dropped.
    Held(File),
    /// The state dir cannot be written (read-only file system, no
    /// permission): there is nothing to serialise records against, so qus
    /// goes on without records. The reason is for a WARN line.
    ReadOnly(String),
}

fn read_only(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
        || e.kind() == io::ErrorKind::ReadOnlyFilesystem
        || e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error())
}

/// Every directory above the state dir, and every link on the way to it:
/// root's or the caller's, and writable by nobody else (a sticky one of
/// root's, such as /tmp, may be on the way). Otherwise whoever may write
/// one of them could swap the state dir for one holding forged records,
/// and those decide what qus removes.
fn ancestors_trusted(dir: &Path, me: u32) -> Result<(), String> {
    let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    parent_trusted(parent, dir, me)
}

/// [`ancestors_trusted`] from `parent` up, for the state dir `dir` (which
/// may not exist yet: then `parent` is its nearest existing ancestor).
fn parent_trusted(parent: &Path, dir: &Path, me: u32) -> Result<(), String> {
    let owner_ok = |uid: u32| uid == me || crate::safety::trusted_owner(uid);
    for step in parent.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        let meta = fs::symlink_metadata(step).map_err(|e| format!("{}: {e}", step.display()))?;
        if meta.file_type().is_symlink() && !owner_ok(meta.uid()) {
            return Err(format!(
                "{} (on the way to state dir {}) is a link owned by uid {}",
                step.display(),
                dir.display(),
                meta.uid()
            ));
        }
    }
    let real = fs::canonicalize(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    for step in real.ancestors() {
        let meta = fs::metadata(step).map_err(|e| format!("{}: {e}", step.display()))?;
        let sticky = meta.mode() & 0o1000 != 0;
        let others_write = meta.mode() & 0o022 != 0;
        if !owner_ok(meta.uid())
            || (others_write && !(sticky && crate::safety::trusted_owner(meta.uid())))
        {
            return Err(format!(
                "{} (above state dir {}) is owned by uid {} with mode {:o}: whoever may write \
                 it could swap the state dir for one with forged records; use a state dir \
                 whose every parent is root's (or yours) and writable by nobody else",
                step.display(),
                dir.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// Open a lock file of the state dir; one that others could open (from an
/// older qus, or planted) is replaced, so a descriptor opened on it earlier
/// locks a file nobody uses any more.
fn open_lock(dir: &Dir, name: &str) -> io::Result<File> {
    let me = rustix::process::geteuid().as_raw();
    if let Some(st) = dir.stat_of(name)? {
        let regular = rustix::fs::FileType::from_raw_mode(st.st_mode).is_file();
        if !regular || st.st_uid != me || st.st_mode & 0o077 != 0 {
            dir.remove(name)?;
        }
    }
    dir.open_file(
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::NONBLOCK,
        0o600,
    )
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The state dir, opened and checked on its descriptor: a real
    /// directory (not a link), owned by the caller and writable by nobody
    /// else, below directories nobody else may write. Every file of it is
    /// then reached through this descriptor, so swapping the path after
    /// the check changes nothing. `Ok(None)`: it does not exist.
    fn open_checked(&self) -> Result<Option<Dir>, String> {
        let me = rustix::process::geteuid().as_raw();
        let dir = match Dir::open(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(format!(
                    "state dir {} is a symlink; give the directory itself",
                    self.dir.display()
                ))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(format!(
                    "state dir {} is not a directory",
                    self.dir.display()
                ))
            }
            Err(e) => return Err(e.to_string()),
        };
        let meta = dir.stat().map_err(|e| e.to_string())?;
        if meta.st_uid != me {
            return Err(format!(
                "state dir {} is owned by uid {}, not by the caller (uid {me}); \
                 its records decide what qus removes, so only the caller may own it",
                self.dir.display(),
                meta.st_uid
            ));
        }
        if meta.st_mode & 0o022 != 0 {
            return Err(format!(
                "state dir {} is writable by group or others (mode {:o}); make it 0700 or 0755",
                self.dir.display(),
                meta.st_mode & 0o7777
            ));
        }
        ancestors_trusted(&self.dir, me)?;
        Ok(Some(dir))
    }

    /// May the caller trust this directory (see [`StateDir::open_checked`])?
    /// `Ok(false)`: it does not exist.
    fn trusted(&self) -> Result<bool, String> {
        match self.open_checked()? {
            Some(_) => Ok(true),
            None => self.way_to_missing_dir().map(|()| false),
        }
    }

    /// For a state dir still to be made: are the directories that exist on
    /// its way trusted? Checked before anything is created, so a state dir
    /// under a directory another user owns is refused without leaving a
    /// directory of the caller's behind in theirs.
    fn way_to_missing_dir(&self) -> Result<(), String> {
        match self.dir.ancestors().skip(1).find(|p| p.exists()) {
            Some(existing) => {
                parent_trusted(existing, &self.dir, rustix::process::geteuid().as_raw())
            }
            None => Ok(()),
        }
    }

    /// Why the state dir is refused (another user owns it or may write it,
    /// or a directory above it), if it is.
    pub fn refusal(&self) -> Option<String> {
        self.trusted().err()
    }

    /// Create the directory (0700) if needed, check it, and hold it open.
    fn prepare(&self) -> io::Result<Dir> {
        let refused = |why| io::Error::new(io::ErrorKind::PermissionDenied, why);
        if let Some(dir) = self.open_checked().map_err(refused)? {
            return Ok(dir);
        }
        self.way_to_missing_dir().map_err(refused)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| with_path(e, &self.dir))?;
        self.open_checked().map_err(refused)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("state dir {} vanished as it was made", self.dir.display()),
            )
        })
    }

    /// The checked directory, to read from: `None` when it does not exist
    /// or cannot be trusted (its files then count as absent).
    fn readable(&self) -> Option<Dir> {
        self.open_checked().ok().flatten()
    }

    /// Take the exclusive lock, waiting at most `wait` for another qus or
    /// qusd to finish. The lock file is the caller's, mode 0600: nobody
    /// else can open it, so nobody else can hold it.
    pub fn lock(&self, wait: Duration) -> io::Result<Lock> {
        let dir = match self.prepare() {
            Ok(d) => d,
            Err(e) if read_only(&e) && self.trusted().is_ok() => {
                return Ok(Lock::ReadOnly(e.to_string()))
            }
            Err(e) => return Err(e),
        };
        let path = self.dir.join(LOCK);
        let file = match open_lock(&dir, LOCK) {
            Ok(f) => f,
            Err(e) if read_only(&e) => return Ok(Lock::ReadOnly(e.to_string())),
            Err(e) => return Err(e),
        };
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Lock::Held(file)),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(with_path(e, &path)),
            }
            if start.elapsed() >= wait {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{} is held by another qus or qusd for more than {:.0} s; \
                         try again when it has finished",
                        path.display(),
                        wait.as_secs_f64()
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Read the ownership records. Returns the records and, when they were
    /// unusable (or the directory cannot be trusted), a warning saying why
    /// (the records are then empty: qus adopts, never removes, on doubt).
    pub fn load(&self) -> (OwnedEntries, Option<String>) {
        let dir = match self.open_checked() {
            Ok(Some(d)) => d,
            Ok(None) => return (OwnedEntries::new(), None),
            Err(why) => {
                return (
                    OwnedEntries::new(),
                    Some(format!("{why}; ignoring its records")),
                )
            }
        };
        let path = self.dir.join(FILE);
        let text = match dir.read(FILE) {
            Ok(Some(t)) => t,
            Ok(None) => return (OwnedEntries::new(), None),
            Err(e) => return (OwnedEntries::new(), Some(e.to_string())),
        };
        let disk: OnDisk = match serde_json::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                return (
                    OwnedEntries::new(),
                    Some(format!("{}: corrupt, starting afresh: {e}", path.display())),
                )
            }
        };
        let mut owned = OwnedEntries::new();
        let mut bad = Vec::new();
        for (name, r) in disk.entries {
            let replaced = r
                .replaced
                .as_deref()
                .and_then(|l| parse_register_line(l).ok())
                .map(|(_, spec)| spec);
            match parse_register_line(&r.register) {
                Ok((_, spec)) => {
                    owned.insert(
                        name,
                        Owned {
                            arch: r.arch,
                            spec,
                            identity: r.identity,
                            replaced,
                        },
                    );
                }
                Err(e) => bad.push(format!("{name}: {e}")),
            }
        }
        let warning = (!bad.is_empty()).then(|| {
            format!(
                "{}: dropped bad records: {}",
                path.display(),
                bad.join("; ")
            )
        });
        (owned, warning)
    }

    /// Write the records atomically.
    pub fn save(&self, owned: &OwnedEntries) -> io::Result<()> {
        let disk = OnDisk {
            version: 1,
            entries: owned
                .iter()
                .map(|(name, o)| {
                    (
                        name.clone(),
                        Record {
                            arch: o.arch.clone(),
                            register: o.spec.register_line(name),
                            identity: o.identity,
                            replaced: o.replaced.as_ref().map(|r| r.register_line(name)),
                        },
                    )
                })
                .collect(),
        };
        // Compact: a third smaller than pretty-printed, which counts at
        // 1000 entries (qusd's peak memory) and on every cold start;
        // `jq . owned.json` shows it to people.
        let mut text = serde_json::to_string(&disk)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        text.push('\n');
        self.write(FILE, text.as_bytes())
    }

    /// The ownership records: flushed to disk, they outlive a crash.
    fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.prepare()?.write_atomic(name, bytes, 0o600, true)
    }

    /// Caches and the daemon's status: rebuilt or rewritten if lost, so
    /// not flushed (a state dir on a disk then costs one sync per pass).
    fn write_unsynced(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.prepare()?.write_atomic(name, bytes, 0o600, false)
    }
}

/// What a running qusd publishes about itself (`STATE_DIR/qusd.json`), for
/// `qus status --daemon` (readiness/liveness probes in containers, where
/// there is no systemd to ask).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DaemonStatus {
    pub pid: u32,
    /// The process's start time (field 22 of `/proc/PID/stat`), so a pid
    /// reused by another process after a crash is not taken for qusd.
    #[serde(default)]
    pub start_time: u64,
    pub ready: bool,
    pub status: String,
}

/// A running qusd's hold on its state dir (see [`StateDir::claim_daemon`]).
#[derive(Debug)]
pub struct Claim {
    _dir: Dir,
    _pid_file: Option<File>,
}

/// Whether the qusd behind a published status still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Its pid runs, and it is the same process.
    Running,
    /// Its pid is not visible here, but it holds the state dir's claim
    /// (it runs in another pid namespace).
    RunningElsewhere,
    Gone,
}

/// Native verdicts hold for one boot of one kernel (ia32_emulation and
/// friends do not change while it runs), so they are cached under the boot
/// id and the host's machine name: a re-run costs no probe executions.
#[derive(Debug, Serialize, Deserialize)]
struct NativeCache {
    key: String,
    verdicts: NativeVerdicts,
}

/// This process as `/proc` shows it: its pid there and its start time.
/// In a pid namespace with another namespace's `/proc` (a container
/// started without its own), `getpid()` names some other process of that
/// `/proc`; `/proc/self` names this one. `(getpid(), 0)` when `/proc`
/// does not show this process at all.
pub fn own_process() -> (u32, u64) {
    let shown = fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse::<u32>().ok());
    match shown.and_then(|pid| Some((pid, process_start_time(pid)?))) {
        Some(seen) => seen,
        None => (std::process::id(), 0),
    }
}

/// The start time of a process, in clock ticks since boot.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl StateDir {
    /// Publish the daemon's status (atomically).
    pub fn write_daemon_status(&self, st: &DaemonStatus) -> io::Result<()> {
        let text =
            serde_json::to_string(st).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.write_unsynced(DAEMON_FILE, text.as_bytes())
    }

    /// Is the qusd that published `st` alive? Its pid is checked with its
    /// start time (a reused pid is not qusd); a qusd in another pid
    /// namespace (a container's, with the host's `/proc` here) publishes a
    /// pid this `/proc` does not show, so then the claim on `qusd.pid`
    /// decides: a qusd holds a lock on the directory for as long as it runs.
    pub fn daemon_alive(&self, st: &DaemonStatus) -> Liveness {
        if process_start_time(st.pid) == Some(st.start_time) {
            return Liveness::Running;
        }
        let claimed = self
            .readable()
            .and_then(|d| {
                d.open_file(PID_FILE, OFlags::RDONLY | OFlags::NONBLOCK, 0)
                    .ok()
            })
            .is_some_and(|f| matches!(f.try_lock_shared(), Err(fs::TryLockError::WouldBlock)));
        if claimed {
            Liveness::RunningElsewhere
        } else {
            Liveness::Gone
        }
    }

    /// The published daemon status, if any.
    pub fn read_daemon_status(&self) -> Option<DaemonStatus> {
        let text = self.readable()?.read(DAEMON_FILE).ok()??;
        serde_json::from_str(&text).ok()
    }

    /// Cached native verdicts for `key`, if any.
    pub fn load_native(&self, key: &str) -> Option<NativeVerdicts> {
        let text = self.readable()?.read(NATIVE_FILE).ok()??;
        let cache: NativeCache = serde_json::from_str(&text).ok()?;
        (cache.key == key).then_some(cache.verdicts)
    }

    /// Cache native verdicts; failure (read-only state dir) only costs a
    /// re-probe next time.
    pub fn save_native(&self, key: &str, verdicts: &NativeVerdicts) {
        let cache = NativeCache {
            key: key.to_string(),
            verdicts: verdicts.clone(),
        };
        if let Ok(text) = serde_json::to_string(&cache) {
            let _ = self.write_unsynced(NATIVE_FILE, text.as_bytes());
        }
    }

    /// Cached emulator versions, keyed by file identity.
    pub fn load_versions(&self) -> std::collections::BTreeMap<String, String> {
        let cached = || -> Option<std::collections::BTreeMap<String, String>> {
            serde_json::from_str(&self.readable()?.read(VERSIONS_FILE).ok()??).ok()
        };
        cached().unwrap_or_default()
    }

    /// Save the version cache; failure only costs running `--version`
    /// again next time.
    pub fn save_versions(&self, versions: &std::collections::BTreeMap<String, String>) {
        if let Ok(text) = serde_json::to_string(versions) {
            let _ = self.write_unsynced(VERSIONS_FILE, text.as_bytes());
        }
    }

    /// Claim the state dir for one qusd: an exclusive lock on the
    /// directory itself (which needs no write access, so two qusd on a
    /// read-only state dir still exclude each other) and on `qusd.pid`
    /// (mode 0600, holding the pid) where that can be written. Held as long
    /// as the returned claim lives. A second qusd gets an error naming the
    /// first one's pid. `Ok(None)` when the state dir does not exist and
    /// cannot be made (there is nothing to share then).
    pub fn claim_daemon(&self) -> io::Result<Option<Claim>> {
        let dir = match self.prepare() {
            Ok(d) => d,
            Err(e) if read_only(&e) && self.trusted().is_ok() => return Ok(None),
            Err(e) => return Err(e),
        };
        let taken = || {
            let pid = dir.read(PID_FILE).ok().flatten().unwrap_or_default();
            let pid = match pid.trim() {
                "" => "unknown".to_string(),
                p => p.to_string(),
            };
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another qusd (pid {pid}) is already running on state dir {}; \
                     stop it first, or give this one another --state-dir",
                    self.dir.display()
                ),
            )
        };
        if !dir.try_lock(true)? {
            return Err(taken());
        }
        let path = self.dir.join(PID_FILE);
        let pid_file = match open_lock(&dir, PID_FILE) {
            Ok(mut file) => {
                match file.try_lock() {
                    Ok(()) => {}
                    Err(fs::TryLockError::WouldBlock) => return Err(taken()),
                    Err(fs::TryLockError::Error(e)) => return Err(with_path(e, &path)),
                }
                file.set_len(0).map_err(|e| with_path(e, &path))?;
                io::Write::write_all(&mut file, format!("{}\n", own_process().0).as_bytes())
                    .map_err(|e| with_path(e, &path))?;
                Some(file)
            }
            Err(e) if read_only(&e) => None,
            Err(e) => return Err(e),
        };
        Ok(Some(Claim {
            _dir: dir,
            _pid_file: pid_file,
        }))
    }

    /// Withdraw it (clean stop), unless another process published since.
    pub fn clear_daemon_status(&self, pid: u32) {
        if self.read_daemon_status().is_some_and(|st| st.pid == pid) {
            if let Some(dir) = self.readable() {
                let _ = dir.remove(DAEMON_FILE);
            }
        }
    }
}
