//! A directory held open by its descriptor, and the file operations qus
//! makes in it, each relative to that descriptor (`openat`, `renameat`,
//! `unlinkat`, `fstatat`), none following a link.
//!
//! Why: a directory is checked (its owner, its mode) before qus trusts
//! what it holds. Checked by path and then used by path, someone who can
//! swap the path between the two (a rename, `RENAME_EXCHANGE` in a loop)
//! decides which directory is used. Checked on the descriptor and used
//! through it, a swapped path changes nothing: every operation lands in
//! the directory that was checked.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Stat};

use crate::fsutil::with_path;

/// Write `bytes` to `dir/name` atomically (see [`Dir::write_atomic`]),
/// flushed to disk. `dir` may be a link to a directory (an `/etc/qus.d`
/// that points elsewhere).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    Dir::open_following(dir)?.write_atomic(name, bytes, mode, true)
}

/// An open directory.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Open `path` as a directory; a link at `path` itself is refused
    /// (ELOOP), links above it are followed.
    pub fn open(path: &Path) -> io::Result<Dir> {
        Dir::open_with(path, OFlags::NOFOLLOW)
    }

    /// Open `path` as a directory, following a link at `path` (a config
    /// directory may be a link, as a ConfigMap's is).
    pub fn open_following(path: &Path) -> io::Result<Dir> {
        Dir::open_with(path, OFlags::empty())
    }

    fn open_with(path: &Path, extra: OFlags) -> io::Result<Dir> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | extra;
        let fd =
            rustix::fs::open(path, flags, Mode::empty()).map_err(|e| with_path(e.into(), path))?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    fn at(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The directory's own owner and mode, from its descriptor.
    pub fn stat(&self) -> io::Result<Stat> {
        rustix::fs::fstat(&self.fd).map_err(|e| with_path(e.into(), &self.path))
    }

    /// Take a lock on the directory itself without waiting: `Ok(false)`
    /// when another descriptor holds a conflicting one. A lock needs no
    /// write access, so it works on a read-only file system too. Held
    /// until this `Dir` is dropped.
    pub fn try_lock(&self, exclusive: bool) -> io::Result<bool> {
        use rustix::fs::FlockOperation;
        let op = if exclusive {
            FlockOperation::NonBlockingLockExclusive
        } else {
            FlockOperation::NonBlockingLockShared
        };
        match rustix::fs::flock(&self.fd, op) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
            Err(e) => Err(with_path(e.into(), &self.path)),
        }
    }

    /// What `name` is (a link is not followed); `None` when absent.
    pub fn stat_of(&self, name: &str) -> io::Result<Option<Stat>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(with_path(e.into(), &self.at(name))),
        }
    }

    /// Open `name` with `flags` (never through a link, never blocking on a
    /// FIFO); `mode` applies when `flags` creates it.
    pub fn open_file(&self, name: &str, flags: OFlags, mode: u32) -> io::Result<File> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
        rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode))
            .map(File::from)
            .map_err(|e| with_path(e.into(), &self.at(name)))
    }

    /// Read `name` whole; `None` when it does not exist.
    pub fn read(&self, name: &str) -> io::Result<Option<String>> {
        let mut file = match self.open_file(name, OFlags::RDONLY | OFlags::NONBLOCK, 0) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", self.at(name).display()),
            ));
        }
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| with_path(e, &self.at(name)))?;
        Ok(Some(text))
    }

    /// Remove `name` (a link itself, never its target); absent is fine.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(with_path(e.into(), &self.at(name))),
        }
    }

    /// Write `bytes` to `name` atomically: into a new temporary file here
    /// (created exclusively, with `mode` whatever the umask), flushed to
    /// disk when `sync`, then renamed over `name`. Readers see the old file
    /// or the new one, never a mix; a link planted at either name is
    /// replaced, not followed.
    pub fn write_atomic(&self, name: &str, bytes: &[u8], mode: u32, sync: bool) -> io::Result<()> {
        let tmp = format!(".{name}.{}.tmp", std::process::id());
        // A leftover from a crashed run (or something planted).
        self.remove(&tmp)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        let mut file = self.open_file(&tmp, flags, mode)?;
        let written = (|| {
            // The umask may have narrowed `mode`; make it exactly `mode`.
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
            file.write_all(bytes)?;
            if sync {
                file.sync_all()?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = self.remove(&tmp);
            return Err(with_path(e, &self.at(&tmp)));
        }
        drop(file);
        rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name).map_err(|e| {
            let _ = self.remove(&tmp);
            with_path(e.into(), &self.at(name))
        })?;
        if sync {
            // The rename itself is durable once the directory is.
            rustix::fs::fsync(&self.fd).map_err(|e| with_path(e.into(), &self.path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_stay_in_the_directory_that_was_opened() {
        let top = tempfile::tempdir().expect("tempdir");
        let a = top.path().join("a");
        let b = top.path().join("b");
        std::fs::create_dir(&a).expect("mkdir a");
        std::fs::create_dir(&b).expect("mkdir b");
        let dir = Dir::open(&a).expect("open a");
        // Swap the paths: `a` is now the other directory.
        let tmp = top.path().join("t");
        std::fs::rename(&a, &tmp).expect("a -> t");
        std::fs::rename(&b, &a).expect("b -> a");
        dir.write_atomic("f", b"x", 0o600, true).expect("write");
        assert!(
            tmp.join("f").exists(),
            "written where the descriptor points"
        );
        assert!(!a.join("f").exists(), "nothing in the directory swapped in");
        assert_eq!(dir.read("f").expect("read").as_deref(), Some("x"));
        dir.remove("f").expect("remove");
        assert_eq!(dir.read("f").expect("read"), None);
    }

    #[test]
    fn links_are_neither_opened_nor_followed() {
        let top = tempfile::tempdir().expect("tempdir");
        let real = top.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        let link = top.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert!(Dir::open(&link).is_err(), "a link as the directory");
        assert!(Dir::open_following(&link).is_ok());
        let dir = Dir::open(&real).expect("open");
        let outside = top.path().join("outside");
        std::fs::write(&outside, "secret").expect("write");
        std::os::unix::fs::symlink(&outside, real.join("f")).expect("planted link");
        assert!(dir.read("f").is_err(), "read through a planted link");
        dir.write_atomic("f", b"mine", 0o600, false)
            .expect("write over the link");
        assert_eq!(std::fs::read_to_string(&outside).expect("read"), "secret");
        let st = dir.stat_of("f").expect("stat").expect("there");
        assert_eq!(st.st_mode & 0o777, 0o600);
    }
}
