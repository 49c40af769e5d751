//! Kernel I/O on a binfmt_misc mount: read entries, register, remove,
//! enable/disable, the global status, and mounting.
//!
//! Every change is one `write(2)` of one string, as the kernel expects; a
//! short write is an error, never retried piecemeal.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::entry::{parse_entry_file, EntrySpec, KernelEntries};

/// Say why a mount was refused where the reason is knowable: inside a
/// user namespace, binfmt_misc needs Linux 6.7, and a mount namespace that
/// the user namespace owns.
fn explain_mount_error(e: io::Error) -> io::Error {
    let place = crate::userns::here();
    if e.kind() != io::ErrorKind::PermissionDenied || place.host_root() {
        return e;
    }
    let why = if place.initial {
        "only root can mount binfmt_misc on the host; without root, use `qus podman register`, \
         `qus run -- CMD` or `qus buildah …` (a user namespace of your own, Linux 6.7+)"
            .to_string()
    } else {
        match crate::userns::kernel_at_least(6, 7) {
            (release, false) => format!(
                "Linux {release} cannot mount binfmt_misc inside a user namespace \
                 (that needs Linux 6.7 or later); only host root can register here"
            ),
            _ => "this user namespace does not own the mount namespace; run qus in one that \
                  does: `podman unshare`, `buildah unshare`, `unshare -Urm` or `qus run`"
                .to_string(),
        }
    };
    io::Error::new(e.kind(), format!("{e}: {why}"))
}

/// `BINFMTFS_MAGIC` from `<linux/magic.h>`: tells a real mount from an empty dir.
const BINFMTFS_MAGIC: i64 = 0x4249_4e4d;

/// `AUTOFS_SUPER_MAGIC`: an automount point that has not mounted (yet).
const AUTOFS_SUPER_MAGIC: i64 = 0x0187;

/// What the directory binfmt_misc should be reached through is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountPoint {
    /// A binfmt_misc instance (mounted, or an automount that fired).
    Binfmt,
    /// An autofs mount that stayed untriggered: its mount unit failed.
    /// Mounting over it would hide what a later trigger mounts, which is
    /// how registrations made from containers were lost on hosts with
    /// systemd's automount (tonistiigi/binfmt#288, amazon-eks-ami#2789).
    Automount,
    /// Anything else: a plain directory (qus may mount there when empty).
    Other,
    /// Not there at all.
    Missing,
}

impl MountPoint {
    fn from_fs_type(f_type: i64) -> MountPoint {
        match f_type {
            BINFMTFS_MAGIC => MountPoint::Binfmt,
            AUTOFS_SUPER_MAGIC => MountPoint::Automount,
            _ => MountPoint::Other,
        }
    }
}

/// One binfmt_misc instance, reached through the directory it is mounted on.
#[derive(Debug, Clone)]
pub struct BinfmtMisc {
    root: PathBuf,
}

/// What one read of binfmt_misc found.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub entries: KernelEntries,
    /// Entry names in the kernel's match order (tried first comes first).
    pub order: Vec<String>,
    /// Entries whose file could not be parsed, with the reason.
    pub unparsable: BTreeMap<String, String>,
}

impl BinfmtMisc {
    pub fn new(root: impl Into<PathBuf>) -> BinfmtMisc {
        BinfmtMisc { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Is a binfmt_misc file system mounted at the root?
    pub fn is_mounted(&self) -> bool {
        self.mount_point() == MountPoint::Binfmt
    }

    /// What the root is, after touching a file below it: that fires
    /// systemd's `proc-sys-fs-binfmt_misc.automount`, if there is one, so
    /// an automount point reads as the binfmt_misc it mounts.
    pub fn mount_point(&self) -> MountPoint {
        let _ = fs::metadata(self.root.join("status"));
        // f_type's C type differs between architectures; compare as i64.
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        match rustix::fs::statfs(&self.root) {
            Ok(s) => MountPoint::from_fs_type(s.f_type as i64),
            Err(_) => MountPoint::Missing,
        }
    }

    /// Mount binfmt_misc at the root. Since Linux 6.7 a mount made in a
    /// non-initial user namespace gives that namespace its own instance.
    ///
    /// Only on an empty directory: a mount over files would hide them
    /// (the kernel's own `/proc/sys/fs/binfmt_misc` is always empty).
    pub fn mount(&self) -> io::Result<()> {
        if self.mount_point() == MountPoint::Automount {
            return Err(io::Error::other(
                "it is an automount point that did not mount binfmt_misc when touched \
                 (systemd's proc-sys-fs-binfmt_misc.automount: see `systemctl status \
                 proc-sys-fs-binfmt_misc.mount`); qus does not mount over it, which would \
                 hide the entries of every later trigger",
            ));
        }
        fs::create_dir_all(&self.root)?;
        if fs::read_dir(&self.root)?.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                "the directory is not empty; qus mounts binfmt_misc only on an empty one \
                 (mounting over files would hide them)",
            ));
        }
        rustix::mount::mount(
            "binfmt_misc",
            &self.root,
            "binfmt_misc",
            rustix::mount::MountFlags::NOSUID
                | rustix::mount::MountFlags::NODEV
                | rustix::mount::MountFlags::NOEXEC,
            None,
        )
        .map_err(|e| explain_mount_error(io::Error::from(e)))
    }

    /// Make sure the instance is reachable; mount it when allowed.
    /// Returns true when this call mounted it.
    pub fn ensure_mounted(&self, may_mount: bool) -> io::Result<bool> {
        if self.is_mounted() {
            return Ok(false);
        }
        if !may_mount {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "binfmt_misc is not mounted at {} (and binfmt.mount = false)",
                    self.root.display()
                ),
            ));
        }
        self.mount().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot mount binfmt_misc at {}: {e}", self.root.display()),
            )
        })?;
        Ok(true)
    }

    /// The global switch (`status` reads `enabled` or `disabled`).
    pub fn enabled(&self) -> io::Result<bool> {
        let text = crate::fsutil::read_generated(&self.root.join("status"))?;
        Ok(text.trim() == "enabled")
    }

    /// Turn every entry on or off at once.
    pub fn set_all_enabled(&self, enabled: bool) -> io::Result<()> {
        write_once(&self.root.join("status"), if enabled { "1" } else { "0" })
    }

    /// Read every entry, in the kernel's match order. Entries whose file
    /// cannot be parsed are listed apart with the reason, so callers can
    /// leave them alone.
    ///
    /// binfmt_misc tries entries newest-registered first, and `readdir`
    /// returns them in that same order (checked on Linux 6.18: register
    /// `zzz aaa mmm bbb` and the listing is `bbb mmm aaa zzz`); so the
    /// listing is kept unsorted.
    pub fn entries(&self) -> io::Result<Listing> {
        let mut listing = Listing::default();
        for dirent in fs::read_dir(&self.root)? {
            let dirent = dirent?;
            let Ok(name) = dirent.file_name().into_string() else {
                continue;
            };
            if name == "register" || name == "status" {
                continue;
            }
            match crate::fsutil::read_generated(&dirent.path()) {
                Ok(text) => match parse_entry_file(&text) {
                    Ok(entry) => {
                        listing.order.push(name.clone());
                        listing.entries.insert(name, entry);
                    }
                    Err(e) => {
                        listing.unparsable.insert(name, e.to_string());
                    }
                },
                // Removed between readdir and read: it is simply gone.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    listing.unparsable.insert(name, e.to_string());
                }
            }
        }
        Ok(listing)
    }

    /// Register a new entry. Fails with EEXIST if the name is taken.
    pub fn register(&self, name: &str, spec: &EntrySpec) -> io::Result<()> {
        self.registrar().register(name, spec)
    }

    /// A registrar that opens `register` once for many entries (the
    /// kernel takes one entry per `write`, so one descriptor serves all).
    pub fn registrar(&self) -> Registrar<'_> {
        Registrar {
            binfmt: self,
            file: None,
        }
    }

    /// Remove an entry.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        write_once(&self.entry_path(name)?, "-1")
    }

    /// Is this entry enabled (read as every entry file is read)?
    pub fn entry_enabled(&self, name: &str) -> io::Result<bool> {
        let text = crate::fsutil::read_generated(&self.entry_path(name)?)?;
        parse_entry_file(&text)
            .map(|e| e.enabled)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }

    /// Enable or disable one entry.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> io::Result<()> {
        write_once(&self.entry_path(name)?, if enabled { "1" } else { "0" })
    }

    fn entry_path(&self, name: &str) -> io::Result<PathBuf> {
        super::entry::validate_name(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        Ok(self.root.join(name))
    }
}

/// Registers entries through one open `register` file.
pub struct Registrar<'a> {
    binfmt: &'a BinfmtMisc,
    file: Option<fs::File>,
}

impl Registrar<'_> {
    /// Register a new entry. Fails with EEXIST if the name is taken.
    pub fn register(&mut self, name: &str, spec: &EntrySpec) -> io::Result<()> {
        let line = spec
            .checked_register_line(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let path = self.binfmt.root.join("register");
        let file = match &mut self.file {
            Some(f) => f,
            slot => slot.insert(OpenOptions::new().write(true).open(&path)?),
        };
        write_all_once(file, &path, &line)
    }
}

/// One `write(2)` of the whole string; binfmt_misc parses each write alone.
fn write_once(path: &Path, text: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    write_all_once(&mut file, path, text)
}

fn write_all_once(file: &mut fs::File, path: &Path, text: &str) -> io::Result<()> {
    let n = file.write(text.as_bytes())?;
    if n != text.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "short write to {} ({n} of {} bytes)",
                path.display(),
                text.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_system_types_tell_binfmt_from_an_untriggered_automount() {
        assert_eq!(MountPoint::from_fs_type(0x4249_4e4d), MountPoint::Binfmt);
        assert_eq!(MountPoint::from_fs_type(0x0187), MountPoint::Automount);
        // tmpfs, ext4, proc: a directory qus may mount on when it is empty.
        for t in [0x0102_1994, 0xef53, 0x9fa0] {
            assert_eq!(MountPoint::from_fs_type(t), MountPoint::Other);
        }
    }

    #[test]
    fn a_plain_directory_is_other_and_a_missing_one_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(BinfmtMisc::new(dir.path()).mount_point(), MountPoint::Other);
        let gone = BinfmtMisc::new(dir.path().join("none"));
        assert_eq!(gone.mount_point(), MountPoint::Missing);
        assert!(!gone.is_mounted());
    }
}
