//! Tiny foreign programs shipped inside qus: each writes one fixed line
//! (`qus-probe ARCH`) with the `write` syscall and exits 0. They prove an
//! emulator really runs a binary of its arch. Sources and the script that
//! rebuilds them are in `probes/` (`build.sh` with Debian's cross binutils,
//! `gen.py` for arches without an assembler); the build of qus itself
//! needs neither. hexagon and cris have no probe: no assembler in Debian
//! and an instruction encoding (hexagon packets) too error-prone to emit
//! by hand.

/// One probe program.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub arch: &'static str,
    pub program: &'static [u8],
}

impl Probe {
    /// The line the program prints when it runs correctly.
    pub fn expected_output(&self) -> String {
        format!("qus-probe {}\n", self.arch)
    }
}

macro_rules! probe {
    ($arch:literal) => {
        Probe {
            arch: $arch,
            program: include_bytes!(concat!("../probes/bin/", $arch)),
        }
    };
}

pub static PROBES: &[Probe] = &[
    probe!("aarch64"),
    probe!("aarch64_be"),
    probe!("alpha"),
    probe!("arm"),
    probe!("armeb"),
    probe!("hppa"),
    probe!("i386"),
    probe!("i486"),
    probe!("loongarch64"),
    probe!("m68k"),
    probe!("microblaze"),
    probe!("microblazeel"),
    probe!("mips"),
    probe!("mips64"),
    probe!("mips64el"),
    probe!("mipsel"),
    probe!("mipsn32"),
    probe!("mipsn32el"),
    probe!("or1k"),
    probe!("ppc"),
    probe!("ppc64"),
    probe!("ppc64le"),
    probe!("riscv32"),
    probe!("riscv64"),
    probe!("s390x"),
    probe!("sh4"),
    probe!("sh4eb"),
    probe!("sparc"),
    probe!("sparc32plus"),
    probe!("sparc64"),
    probe!("x86_64"),
    probe!("xtensa"),
    probe!("xtensaeb"),
];

/// The probe for an arch, if qus ships one.
pub fn find(arch: &str) -> Option<&'static Probe> {
    PROBES.iter().find(|p| p.arch == arch)
}
