//! Tiny foreign programs shipped inside qus: each writes one fixed line
//! (`qus-probe ARCH`) with the `write` syscall and exits 0. They prove an
//! emulator really runs a binary of its arch. Sources and the script that
//! rebuilds them are in `probes/` (Debian's cross binutils; the build of
//! qus itself does not need them).

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
    probe!("arm"),
    probe!("ppc64le"),
    probe!("riscv64"),
    probe!("s390x"),
];

/// The probe for an arch, if qus ships one.
pub fn find(arch: &str) -> Option<&'static Probe> {
    PROBES.iter().find(|p| p.arch == arch)
}
