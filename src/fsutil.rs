//! Opening files anyone may have put where qus looks without blocking on
//! them, and reading the small files the kernel generates without the size
//! dance. (Writing, atomically and inside a checked directory, is
//! `dirfd`'s.)

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
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

/// The error, with the path it concerns in front.
pub fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
