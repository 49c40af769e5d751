//! Writing files so that a crash, a concurrent reader or a planted
//! symlink never sees or causes a half-written or misdirected file; and
//! reading the small files the kernel generates without the size dance.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Open a file to read that anyone may have put there (an emulator
/// candidate, a drop-in), without blocking: a FIFO or a device named like
/// one would stop `open` (and qusd's whole loop) until someone writes to
/// it. Opened non-blocking, then anything but a regular file is refused.
pub fn open_regular(path: &Path) -> io::Result<fs::File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// Read a small file the kernel generates (procfs, binfmt_misc). They
/// report size 0, so `fs::read_to_string` asks for the size, then reads
/// 32 bytes at a time and grows: seven system calls for a binfmt_misc
/// entry. One buffer that fits any of them takes it in one read (and one
/// more that finds the end), which counts when qusd reads every entry on
/// every pass.
pub fn read_generated(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut chunk = [0u8; 4096];
    let mut bytes = Vec::new();
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

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
