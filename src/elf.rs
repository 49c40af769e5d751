//! The one ELF question qus asks of an interpreter: is it statically
//! linked? Under the `F` flag the kernel opens the interpreter once, at
//! registration, but a dynamically linked one still needs its loader
//! (`/lib/ld-linux-aarch64.so.1`, …) at run time, looked up in the file
//! system of whatever runs the foreign program: inside a container or
//! chroot it is missing, and every foreign program fails with "No such
//! file or directory" while the host looks fine.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// `PT_INTERP`: the program header naming the dynamic loader.
const PT_INTERP: u32 = 3;

/// How an ELF file is linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linking {
    Static,
    /// Needs this loader (`PT_INTERP`).
    Dynamic(String),
}

/// The loader a file asks for (`PT_INTERP`), if it is a dynamically
/// linked ELF; `None` for a static ELF, or for anything that is not ELF
/// or cannot be read (those are judged elsewhere).
pub fn loader(path: &Path) -> Option<String> {
    match inspect(path)? {
        Linking::Dynamic(l) => Some(l),
        Linking::Static => None,
    }
}

/// Static or dynamic; `None` when not a readable ELF file. A pass asks
/// about the same emulator twice (finding it, then judging it under F),
/// and qusd asks again on every pass: answers are kept per file identity
/// (device, inode, size, mtime), so a replaced file is read afresh.
pub fn inspect(path: &Path) -> Option<Linking> {
    use std::os::unix::fs::MetadataExt;
    type Key = (std::path::PathBuf, u64, u64, u64, i64, i64);
    thread_local! {
        static SEEN: std::cell::RefCell<std::collections::HashMap<Key, Option<Linking>>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    let m = std::fs::metadata(path).ok()?;
    let key: Key = (
        path.to_path_buf(),
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
    );
    if let Some(known) = SEEN.with(|s| s.borrow().get(&key).cloned()) {
        return known;
    }
    let found = read_linking(path);
    SEEN.with(|s| {
        let mut seen = s.borrow_mut();
        if seen.len() > 256 {
            seen.clear();
        }
        seen.insert(key, found.clone());
    });
    found
}

fn read_linking(path: &Path) -> Option<Linking> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut ident = [0u8; 64];
    f.read_exact(&mut ident).ok()?;
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
        (u64_at(&ident, 32), u16_at(&ident, 54), u16_at(&ident, 56))
    } else {
        (
            u64::from(u32_at(&ident, 28)),
            u16_at(&ident, 42),
            u16_at(&ident, 44),
        )
    };
    let entry = usize::from(phentsize);
    if entry < if wide { 56 } else { 32 } || phnum == 0 || phnum > 512 {
        return None;
    }
    let linking = |found: Option<String>| Some(found.map_or(Linking::Static, Linking::Dynamic));
    let mut table = vec![0u8; entry * usize::from(phnum)];
    f.seek(SeekFrom::Start(phoff)).ok()?;
    f.read_exact(&mut table).ok()?;
    linking(table.chunks(entry).find_map(|ph| {
        if u32_at(ph, 0) != PT_INTERP {
            return None;
        }
        let (offset, size) = if wide {
            (u64_at(ph, 8), u64_at(ph, 32))
        } else {
            (u64::from(u32_at(ph, 4)), u64::from(u32_at(ph, 16)))
        };
        let mut name = vec![0u8; usize::try_from(size.min(4096)).ok()?];
        f.seek(SeekFrom::Start(offset)).ok()?;
        f.read_exact(&mut name).ok()?;
        let name = String::from_utf8_lossy(&name);
        Some(name.trim_end_matches('\0').to_string())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
