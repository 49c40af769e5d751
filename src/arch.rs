//! The built-in table of foreign architectures QEMU can emulate in user mode.
//!
//! The magic/mask pairs follow upstream QEMU's `scripts/qemu-binfmt-conf.sh`
//! (the newest version is the authority), plus `cris`, which Debian 12 still
//! ships. Each pattern matches the first bytes of an ELF header: class,
//! byte order, version, `e_type` (executable or shared object) and
//! `e_machine`; the MIPS ones also look at `e_flags` to tell o32 from n32.
//!
//! The *family* says which architectures a host runs natively: an x86_64
//! kernel runs i386 programs, an aarch64 one runs arm. The host's own family
//! is skipped by default, exactly as `qemu-binfmt-conf.sh` does.

/// One architecture QEMU can emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    /// The name users write in configuration (`aarch64`, `ppc64le`, …).
    pub name: &'static str,
    /// The `{arch}` part of the emulator's file name. Differs from `name`
    /// only for i486, which QEMU runs with `qemu-i386`.
    pub emulator: &'static str,
    /// Host family; architectures of the host's family are native.
    pub family: &'static str,
    /// Bytes the ELF header must hold (after masking) at offset 0.
    pub magic: &'static [u8],
    /// Which bits of `magic` matter.
    pub mask: &'static [u8],
}

impl Arch {
    /// Does an executable starting with `header` match this architecture?
    pub fn matches(&self, header: &[u8]) -> bool {
        pattern_matches(self.magic, self.mask, header)
    }
}

/// True when `header` holds `magic` under `mask` at offset 0.
pub fn pattern_matches(magic: &[u8], mask: &[u8], header: &[u8]) -> bool {
    header.len() >= magic.len()
        && magic
            .iter()
            .zip(mask)
            .zip(header)
            .all(|((m, k), h)| m & k == h & k)
}

macro_rules! arch {
    ($name:literal, $emu:literal, $family:literal, $magic:literal, $mask:literal) => {
        Arch {
            name: $name,
            emulator: $emu,
            family: $family,
            magic: $magic,
            mask: $mask,
        }
    };
}

/// Every architecture qus knows, in the order of upstream's target list.
pub static ARCHES: &[Arch] = &[
    arch!("i386", "i386", "i386",
        b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00",
        b"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    arch!("i486", "i386", "i386",
        b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x06\x00",
        b"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    arch!("alpha", "alpha", "alpha",
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x26\x90",
        b"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    arch!("arm", "arm", "arm",
        b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    arch!("armeb", "armeb", "armeb",
        b"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("sparc", "sparc", "sparc",
        b"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x02",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("sparc32plus", "sparc32plus", "sparc",
        b"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x12",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("sparc64", "sparc64", "sparc",
        b"\x7fELF\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x2b",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("ppc", "ppc", "ppc",
        b"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x14",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("ppc64", "ppc64", "ppc",
        b"\x7fELF\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("ppc64le", "ppc64le", "ppcle",
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00"),
    arch!("m68k", "m68k", "m68k",
        b"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x04",
        b"\xff\xff\xff\xff\xff\xff\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    // o32 and n32 share e_machine; bit 0x20 of e_flags (EF_MIPS_ABI2) tells them apart.
    arch!("mips", "mips", "mips",
        b"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20"),
    arch!("mipsel", "mipsel", "mips",
        b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20\x00\x00\x00"),
    arch!("mipsn32", "mipsn32", "mips",
        b"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20"),
    arch!("mipsn32el", "mipsn32el", "mips",
        b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20\x00\x00\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20\x00\x00\x00"),
    arch!("mips64", "mips64", "mips",
        b"\x7fELF\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("mips64el", "mips64el", "mips",
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    arch!("sh4", "sh4", "sh4",
        b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x2a\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    arch!("sh4eb", "sh4eb", "sh4",
        b"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x2a",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("s390x", "s390x", "s390x",
        b"\x7fELF\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("aarch64", "aarch64", "arm",
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    arch!("aarch64_be", "aarch64_be", "armeb",
        b"\x7fELF\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("hppa", "hppa", "hppa",
        b"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x0f",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("riscv32", "riscv32", "riscv32",
        b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    arch!("riscv64", "riscv64", "riscv64",
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    arch!("xtensa", "xtensa", "xtensa",
        b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x5e\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    arch!("xtensaeb", "xtensaeb", "xtensaeb",
        b"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x5e",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("microblaze", "microblaze", "microblaze",
        b"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\xba\xab",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("microblazeel", "microblazeel", "microblazeel",
        b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xab\xba",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    arch!("or1k", "or1k", "or1k",
        b"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x5c",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
    arch!("x86_64", "x86_64", "i386",
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00",
        b"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    arch!("hexagon", "hexagon", "hexagon",
        b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xa4\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    arch!("loongarch64", "loongarch64", "loongarch",
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x02\x01",
        b"\xff\xff\xff\xff\xff\xff\xff\xfc\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    // Not in upstream's list any more, but Debian 12 still ships qemu-cris.
    arch!("cris", "cris", "cris",
        b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x4c\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
];

/// Names users bring from Docker/OCI platforms (`linux/arm64`) and from
/// Debian (`armhf`), with the arch each means. qus's own names stay the
/// canonical ones (what `qus arches` and `qus status` show).
pub const ALIASES: &[(&str, &str)] = &[
    ("amd64", "x86_64"),
    ("386", "i386"),
    ("arm64", "aarch64"),
    ("arm64/v8", "aarch64"),
    ("arm/v7", "arm"),
    ("arm/v6", "arm"),
    ("arm/v5", "arm"),
    ("armhf", "arm"),
    ("armel", "arm"),
    ("ppc64el", "ppc64le"),
    ("mips64le", "mips64el"),
    ("mipsle", "mipsel"),
    ("loong64", "loongarch64"),
];

/// Look an architecture up by its name or an alias, with or without a
/// `linux/` prefix (`aarch64`, `arm64`, `linux/arm64`).
pub fn find(name: &str) -> Option<&'static Arch> {
    let name = name.strip_prefix("linux/").unwrap_or(name);
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, canonical)| *canonical);
    ARCHES.iter().find(|a| a.name == name)
}

/// The names a user most likely meant by an unknown arch name (a typo
/// of a table name or an alias: `aarch46`, `amr64`), closest first; all of
/// them when several are equally close (`amr64`: `amd64` or `arm64`).
pub fn suggest(name: &str) -> Vec<&'static str> {
    let name = name.strip_prefix("linux/").unwrap_or(name);
    let scored: Vec<(usize, &'static str)> = ARCHES
        .iter()
        .map(|a| a.name)
        .chain(ALIASES.iter().map(|(alias, _)| *alias))
        .map(|known| (strsim::damerau_levenshtein(name, known), known))
        .filter(|(d, known)| *d <= 2.min(known.len() / 3).max(1))
        .collect();
    let best = scored.iter().map(|(d, _)| *d).min();
    let mut names: Vec<&'static str> = scored
        .into_iter()
        .filter(|(d, _)| Some(*d) == best)
        .map(|(_, known)| known)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// " (did you mean aarch64?)" for an unknown arch name, or "".
pub fn did_you_mean(name: &str) -> String {
    let names = suggest(name);
    if names.is_empty() {
        return String::new();
    }
    format!(" (did you mean {}?)", names.join(" or "))
}

/// The aliases of a canonical arch name.
pub fn aliases_of(name: &str) -> impl Iterator<Item = &'static str> + '_ {
    ALIASES
        .iter()
        .filter(move |(_, canonical)| *canonical == name)
        .map(|(alias, _)| *alias)
}

/// The family of a host, from the kernel's machine name (`uname -m`), using
/// the same mapping as `qemu-binfmt-conf.sh`'s `qemu_get_family`.
pub fn host_family(machine: &str) -> String {
    let m = machine;
    let family = match m {
        "amd64" | "i386" | "i486" | "i586" | "i686" | "i86pc" | "BePC" | "x86_64" => "i386",
        "Power Macintosh" | "ppc64" | "powerpc" | "ppc" => "ppc",
        "ppc64el" | "ppc64le" => "ppcle",
        "arm" | "armel" | "armhf" | "arm64" | "aarch64" => "arm",
        "armeb" | "aarch64_be" => "armeb",
        _ if m.starts_with("mips") => "mips",
        _ if m.starts_with("sparc") => "sparc",
        _ if m.starts_with("loongarch") => "loongarch",
        _ if is_armv(m, 'l') => "arm",
        _ if is_armv(m, 'b') => "armeb",
        _ => m,
    };
    family.to_string()
}

/// `armv[4-9]*l` / `armv[4-9]*b` from the shell script's case patterns.
fn is_armv(machine: &str, endian: char) -> bool {
    machine
        .strip_prefix("armv")
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| ('4'..='9').contains(&c))
        && machine.ends_with(endian)
}

/// The running kernel's machine name (`uname -m`).
pub fn kernel_machine() -> String {
    // `/proc/sys/kernel/arch` is the kernel's own machine even when this
    // program itself runs under QEMU user emulation (an arm64 qus image
    // on an x86_64 host: QEMU answers uname() with "aarch64", but the
    // kernel still runs x86_64 programs natively, and qus must leave them
    // alone). uname() is the fallback on kernels without it.
    crate::fsutil::read_generated(std::path::Path::new("/proc/sys/kernel/arch"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            rustix::system::uname()
                .machine()
                .to_string_lossy()
                .into_owned()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_unique_and_patterns_are_consistent() {
        let mut names: Vec<_> = ARCHES.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ARCHES.len());
        assert_eq!(ARCHES.len(), 35);
        for a in ARCHES {
            assert_eq!(a.magic.len(), a.mask.len(), "{}: magic/mask length", a.name);
            assert!(a.magic.len() <= 128, "{}: magic beyond 128 bytes", a.name);
            assert_eq!(&a.magic[..4], b"\x7fELF", "{}", a.name);
        }
    }

    /// Two patterns can match one header exactly when they agree on every
    /// bit both masks test; no two arches may do so.
    #[test]
    fn no_two_arches_can_match_the_same_header() {
        for (i, a) in ARCHES.iter().enumerate() {
            for b in &ARCHES[i + 1..] {
                let n = a.magic.len().min(b.magic.len());
                let overlap = (0..n).all(|k| {
                    let both = a.mask[k] & b.mask[k];
                    a.magic[k] & both == b.magic[k] & both
                });
                assert!(
                    !overlap,
                    "{} and {} can match the same ELF header",
                    a.name, b.name
                );
            }
        }
    }

    #[test]
    fn host_families_follow_qemu_binfmt_conf() {
        assert_eq!(host_family("x86_64"), "i386");
        assert_eq!(host_family("i686"), "i386");
        assert_eq!(host_family("aarch64"), "arm");
        assert_eq!(host_family("armv7l"), "arm");
        assert_eq!(host_family("armv7b"), "armeb");
        assert_eq!(host_family("ppc64le"), "ppcle");
        assert_eq!(host_family("mips64"), "mips");
        assert_eq!(host_family("s390x"), "s390x");
        assert_eq!(host_family("riscv64"), "riscv64");
        assert_eq!(host_family("loongarch64"), "loongarch");
    }

    #[test]
    fn i486_runs_with_the_i386_emulator() {
        assert_eq!(find("i486").map(|a| a.emulator), Some("i386"));
        assert!(find("nope").is_none());
    }
}
