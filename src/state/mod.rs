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
//!
//! Each job in its own file: [`records`] (what qus owns, and the pure
//! rules of its file), [`lock`] (one qus or qusd at a time), [`caches`]
//! (native verdicts, QEMU versions), [`daemon`] (qusd's claim and
//! published status); this file opens and checks the directory all of them
//! go through, and [`trust`] checks the directories above it.

mod caches;
mod daemon;
mod lock;
mod records;
mod trust;

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::dirfd::Dir;
use crate::fsutil::with_path;

pub use daemon::{own_process, Claim, DaemonStatus, Liveness};
pub use lock::Lock;
use trust::{ancestors_trusted, parent_trusted};

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

fn read_only(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
        || e.kind() == io::ErrorKind::ReadOnlyFilesystem
        || e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error())
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
