//! Writing files so that a crash, a concurrent reader or a planted
//! symlink never sees or causes a half-written or misdirected file.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Write `bytes` to `dir/name` atomically: into a new temporary file in
/// the same directory (created exclusively, never through a symlink, with
/// `mode` whatever the umask), flushed to disk, then renamed over the
/// target. Readers see the old file or the new one, never a mix; a link
/// someone planted at either name is replaced, not followed.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_replacing(dir, name, bytes, mode, true)
}

/// [`write_atomic`] without the flush to disk, for what is cheap to lose
/// after a crash (caches, a status that is rewritten anyway): readers still
/// never see a mix, and a state dir on a disk costs no sync.
pub fn write_atomic_unsynced(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_replacing(dir, name, bytes, mode, false)
}

fn write_replacing(dir: &Path, name: &str, bytes: &[u8], mode: u32, sync: bool) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let target = dir.join(name);
    // A leftover from a crashed run (or something planted): a link is
    // removed, not followed.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(with_path(e, &tmp)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)
        .map_err(|e| with_path(e, &tmp))?;
    let written = (|| {
        // The umask may have narrowed `mode` further; never widen it, but
        // make sure what we asked for is what the file has.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(with_path(e, &tmp));
    }
    fs::rename(&tmp, &target).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        with_path(e, &target)
    })
}

/// The error, with the path it concerns in front.
pub fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
