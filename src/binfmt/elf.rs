//! One look at an interpreter file (its first bytes, read once per pass)
//! and the one ELF question qus asks of it: is it statically linked? Under the `F` flag the kernel opens the interpreter once, at
//! registration, but a dynamically linked one still needs its loader
//! (`/lib/ld-linux-aarch64.so.1`, …) at run time, looked up in the file
//! system of whatever runs the foreign program: inside a container or
//! chroot it is missing, and every foreign program fails with "No such
//! file or directory" while the host looks fine.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// `PT_INTERP`: the program header naming the dynamic loader.
const PT_INTERP: u32 = 3;

/// How much of a file one look reads: the ELF header and the program
/// headers of any real emulator fit.
const HEAD_SIZE: usize = 4096;

/// How much of it a [`Head`] keeps: the bytes binfmt_misc matches magic
/// against. The rest is only needed to find the loader, once; 32 emulators
/// do not need 128 KiB of heap (page faults are most of a cold start).
const KEPT: usize = crate::binfmt::entry::MAX_MAGIC_END;

/// How an ELF file is linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linking {
    Static,
    /// Needs this loader (`PT_INTERP`).
    Dynamic(String),
}

/// One look at a file: its first bytes and, if it is ELF, how it is
/// linked. Finding an emulator, judging it under `F` and checking what its
/// magic would catch all use the same look: one `open` and one `read`.
#[derive(Debug, Clone)]
pub struct Head {
    /// Up to [`KEPT`] bytes from the start of the file.
    pub bytes: Vec<u8>,
    /// `None` when it is not an ELF file qus can make sense of.
    pub linking: Option<Linking>,
}

impl Head {
    /// The loader it asks for, if dynamically linked.
    pub fn loader(&self) -> Option<&str> {
        match &self.linking {
            Some(Linking::Dynamic(l)) => Some(l),
            _ => None,
        }
    }
}

/// Open `path` (symlinks followed) and take one look.
pub fn read_head(path: &Path) -> std::io::Result<Head> {
    let f = crate::fsutil::open_regular(path)?;
    let mut bytes = [0u8; HEAD_SIZE];
    let mut filled = 0;
    while filled < HEAD_SIZE {
        match (&f).read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let read = &bytes[..filled];
    Ok(Head {
        linking: linking(&f, read),
        bytes: read[..filled.min(KEPT)].to_vec(),
    })
}

/// The same ELF header with another `e_type` (`ET_EXEC` = 2, `ET_DYN` =
/// 3), in the file's byte order; `None` for what is not ELF.
pub fn with_type(head: &[u8], e_type: u16) -> Option<Vec<u8>> {
    if head.len() < 18 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let mut out = head.to_vec();
    let bytes = if head[5] == 2 {
        e_type.to_be_bytes()
    } else {
        e_type.to_le_bytes()
    };
    out[16..18].copy_from_slice(&bytes);
    Some(out)
}

/// Both ELF types of a header: what a non-PIE and a PIE program of its
/// kind start with.
pub fn both_types(head: &[u8]) -> Vec<Vec<u8>> {
    [2u16, 3]
        .iter()
        .filter_map(|t| with_type(head, *t))
        .collect()
}

/// Static or dynamic, from the head; the program headers or the loader's
/// name are read from the file only when they lie beyond it.
fn linking(f: &std::fs::File, head: &[u8]) -> Option<Linking> {
    let ident = head.get(..64)?;
    if &ident[..4] != b"\x7fELF" {
        return None;
    }
    let wide = ident[4] == 2;
    let big = ident[5] == 2;
    let u16_at = |b: &[u8], o: usize| {
        let v = [b[o], b[o + 1]];
        if big {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        }
    };
    let u32_at = |b: &[u8], o: usize| {
        let v = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if big {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    };
    let u64_at = |b: &[u8], o: usize| {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[o..o + 8]);
        if big {
            u64::from_be_bytes(v)
        } else {
            u64::from_le_bytes(v)
        }
    };
    let (phoff, phentsize, phnum) = if wide {
        (u64_at(ident, 32), u16_at(ident, 54), u16_at(ident, 56))
    } else {
        (
            u64::from(u32_at(ident, 28)),
            u16_at(ident, 42),
            u16_at(ident, 44),
        )
    };
    let entry = usize::from(phentsize);
    if entry < if wide { 56 } else { 32 } || phnum == 0 || phnum > 512 {
        return None;
    }
    let table = bytes_at(f, head, phoff, entry * usize::from(phnum))?;
    let linking = |found: Option<String>| Some(found.map_or(Linking::Static, Linking::Dynamic));
    linking(table.chunks(entry).find_map(|ph| {
        if u32_at(ph, 0) != PT_INTERP {
            return None;
        }
        let (offset, size) = if wide {
            (u64_at(ph, 8), u64_at(ph, 32))
        } else {
            (u64::from(u32_at(ph, 4)), u64::from(u32_at(ph, 16)))
        };
        let name = bytes_at(f, head, offset, usize::try_from(size.min(4096)).ok()?)?;
        let name = String::from_utf8_lossy(&name);
        Some(name.trim_end_matches('\0').to_string())
    }))
}

/// `len` bytes at `offset`: from the head when they are in it, else read.
fn bytes_at(f: &std::fs::File, head: &[u8], offset: u64, len: usize) -> Option<Vec<u8>> {
    let start = usize::try_from(offset).ok()?;
    if let Some(inside) = start.checked_add(len).and_then(|end| head.get(start..end)) {
        return Some(inside.to_vec());
    }
    let mut out = vec![0u8; len];
    f.read_exact_at(&mut out, offset).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loader(path: &Path) -> Option<String> {
        read_head(path).ok()?.loader().map(str::to_string)
    }

    #[test]
    fn static_and_dynamic_programs_of_this_host() {
        // The test binary itself is dynamically linked (Rust's default on
        // glibc); the committed probes are static.
        let me = std::env::current_exe().expect("test binary path");
        let l = loader(&me).expect("a test binary has a loader");
        assert!(l.starts_with('/') && l.contains("ld"), "{l}");
        let probe = Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/bin/aarch64");
        assert_eq!(loader(&probe), None);
        let big_endian = Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/bin/s390x");
        assert_eq!(loader(&big_endian), None);
        assert_eq!(
            loader(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("Cargo.toml")
                    .as_path()
            ),
            None
        );
    }
}
