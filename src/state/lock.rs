//! The lock that serialises `qus` and `qusd` on one state dir.

use std::fs::{self, File};
use std::io;
use std::time::{Duration, Instant};

use rustix::fs::OFlags;

use super::{read_only, StateDir};
use crate::dirfd::Dir;
use crate::fsutil::with_path;

const LOCK: &str = "lock";

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

/// Open a lock file of the state dir; one that others could open (from an
/// older qus, or planted) is replaced, so a descriptor opened on it earlier
/// locks a file nobody uses any more.
pub(super) fn open_lock(dir: &Dir, name: &str) -> io::Result<File> {
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
}
