//! The system calls `qus test` checks each emulator for: calls that
//! current userlands make and that older QEMUs do not emulate, so that a
//! registration which runs a trivial program but breaks `tar` or `chmod`
//! is found before a build fails in the middle.
//!
//! Each check is a tiny foreign program per arch (`probes/bin/sys/ARCH/`,
//! built by `probes/build.sh`) that makes the call with every argument 0
//! (so it fails harmlessly where it exists: EINVAL, EFAULT) and exits with
//! the call's result. What "not implemented" looks like differs per arch
//! (-ENOSYS is exit status 218 on most, 89 on mips, 38 on ppc, 78 on
//! alpha, 90 on sparc, 5 on hppa), so each arch also runs `nosys`, a
//! number no arch has: a call answered like it is missing. Measured, not
//! read from a version table.

use std::time::Duration;

use serde::Serialize;

use crate::probe::{self, Probe};

/// One system call `qus test` checks.
#[derive(Debug)]
pub struct Call {
    pub name: &'static str,
    /// What fails in a container when the emulator lacks it.
    pub without: &'static str,
    /// Whether userlands fall back cleanly when it is missing (then its
    /// absence is reported, not warned about).
    pub harmless: bool,
}

/// Newest last. The numbers (the same on every arch since Linux 5.1, bar
/// alpha's and mips's offsets) are in `probes/build.sh`.
pub static CALLS: &[Call] = &[
    Call {
        name: "pidfd_open",
        without: "systemd, Python's os.pidfd_open and Go's os/exec (1.23+) rely on it; \
                  Python raises, others fall back to racy pid polling",
        harmless: false,
    },
    Call {
        name: "clone3",
        without: "glibc >= 2.34 tries it first for threads and posix_spawn and falls back \
                  to clone on ENOSYS; QEMU answers ENOSYS on purpose (harmless)",
        harmless: true,
    },
    Call {
        name: "close_range",
        without: "glibc >= 2.34 closefrom(), OpenSSH, systemd and CPython's subprocess use it; \
                  most fall back to closing descriptors one by one",
        harmless: false,
    },
    Call {
        name: "openat2",
        without: "tar in current userlands (glibc >= 2.42, e.g. Ubuntu 26.04) fails to \
                  extract archives; QEMU >= 9.2 has it",
        harmless: false,
    },
    Call {
        name: "faccessat2",
        without: "glibc >= 2.33 faccessat() with flags (AT_EACCESS, AT_SYMLINK_NOFOLLOW: \
                  bash's test -x, coreutils) fails",
        harmless: false,
    },
    Call {
        name: "fchmodat2",
        without: "glibc >= 2.39 fchmodat(AT_SYMLINK_NOFOLLOW) (chmod -h, cp -a, tar \
                  restoring symlink modes) falls back through /proc/self/fd and fails \
                  where /proc is not mounted",
        harmless: false,
    },
];

/// Whether an emulator has a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Found {
    Present,
    /// Answered like a call that does not exist (ENOSYS).
    Missing,
    /// The check itself did not run to an answer (crash, hang): why.
    Unknown(String),
}

/// The answer for each of [`CALLS`], in that order.
pub type Answers = Vec<(&'static Call, Found)>;

macro_rules! programs {
    ($($arch:literal),* $(,)?) => {
        &[$(($arch, [
            include_bytes!(concat!("../../../probes/bin/sys/", $arch, "/nosys")).as_slice(),
            include_bytes!(concat!("../../../probes/bin/sys/", $arch, "/pidfd_open")).as_slice(),
            include_bytes!(concat!("../../../probes/bin/sys/", $arch, "/clone3")).as_slice(),
            include_bytes!(concat!("../../../probes/bin/sys/", $arch, "/close_range")).as_slice(),
            include_bytes!(concat!("../../../probes/bin/sys/", $arch, "/openat2")).as_slice(),
            include_bytes!(concat!("../../../probes/bin/sys/", $arch, "/faccessat2")).as_slice(),
            include_bytes!(concat!("../../../probes/bin/sys/", $arch, "/fchmodat2")).as_slice(),
        ])),*]
    };
}

/// Per arch: `nosys`, then one program per entry of [`CALLS`].
static PROGRAMS: &[(&str, [&[u8]; 7])] = programs!(
    "aarch64",
    "aarch64_be",
    "alpha",
    "arm",
    "armeb",
    "hexagon",
    "hppa",
    "i386",
    "i486",
    "loongarch64",
    "m68k",
    "microblaze",
    "microblazeel",
    "mips",
    "mips64",
    "mips64el",
    "mipsel",
    "mipsn32",
    "mipsn32el",
    "or1k",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv32",
    "riscv64",
    "s390x",
    "sh4",
    "sh4eb",
    "sparc",
    "sparc32plus",
    "sparc64",
    "x86_64",
    "xtensa",
    "xtensaeb",
);

/// Run every check for an arch through the kernel (as `qus test`'s probe
/// runs: whatever entry catches it), all at once; `None` when qus has no
/// checks for the arch.
pub fn check(arch: &'static str, timeout: Duration) -> Option<Answers> {
    let (_, programs) = PROGRAMS.iter().find(|(a, _)| *a == arch)?;
    let running: Vec<_> = programs
        .iter()
        .map(|program| probe::start(&Probe { arch, program }))
        .collect();
    let codes: Vec<Result<i32, String>> = running
        .into_iter()
        .map(|r| match r {
            Ok(running) => running.exit_code(timeout),
            Err(ended) => Err(ended.failure().unwrap_or_default()),
        })
        .collect();
    Some(judge(&codes))
}

/// What the exit codes say: `codes[0]` is `nosys`'s.
fn judge(codes: &[Result<i32, String>]) -> Answers {
    CALLS
        .iter()
        .zip(codes.iter().skip(1))
        .map(|(call, code)| {
            let found = match (&codes[0], code) {
                (Err(why), _) => Found::Unknown(format!("the nosys check failed: {why}")),
                (_, Err(why)) => Found::Unknown(why.clone()),
                (Ok(nosys), Ok(code)) if code == nosys => Found::Missing,
                (Ok(_), Ok(_)) => Found::Present,
            };
            (call, found)
        })
        .collect()
}

/// The calls that are missing and matter.
pub fn lacking(answers: &Answers) -> Vec<&'static Call> {
    answers
        .iter()
        .filter(|(c, f)| *f == Found::Missing && !c.harmless)
        .map(|(c, _)| *c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_answered_like_nosys_is_missing() {
        // mips's ENOSYS (89) is nosys's answer; EINVAL (22) is not.
        let codes = [Ok(89), Ok(22), Ok(89), Ok(0), Ok(89), Ok(14), Ok(89)];
        let answers = judge(&codes);
        let missing: Vec<_> = answers
            .iter()
            .filter(|(_, f)| *f == Found::Missing)
            .map(|(c, _)| c.name)
            .collect();
        assert_eq!(missing, ["clone3", "openat2", "fchmodat2"]);
        // clone3 falls back cleanly: not among what is lacking.
        let lacking: Vec<_> = lacking(&answers).iter().map(|c| c.name).collect();
        assert_eq!(lacking, ["openat2", "fchmodat2"]);
    }

    #[test]
    fn a_failed_nosys_check_leaves_every_answer_unknown() {
        let mut codes = vec![Err("crashed with signal 11 (SIGSEGV)".to_string())];
        codes.extend((0..CALLS.len()).map(|_| Ok(22)));
        assert!(judge(&codes)
            .iter()
            .all(|(_, f)| matches!(f, Found::Unknown(why) if why.contains("SIGSEGV"))));
    }

    #[test]
    fn every_arch_with_a_probe_has_the_checks() {
        for p in crate::probe::PROBES {
            assert!(
                PROGRAMS.iter().any(|(a, _)| *a == p.arch),
                "no system call checks for {}",
                p.arch
            );
        }
        assert_eq!(CALLS.len() + 1, PROGRAMS[0].1.len());
    }

    /// The checks run through the entry that runs the arch's probe: each
    /// program is caught by its own arch's entry and no other.
    #[test]
    fn each_check_matches_only_its_own_arch() {
        for (arch, programs) in PROGRAMS {
            for program in programs {
                let matching: Vec<&str> = crate::arch::ARCHES
                    .iter()
                    .filter(|a| a.matches(program))
                    .map(|a| a.name)
                    .collect();
                assert_eq!(matching, [*arch], "a system call check of {arch}");
            }
        }
    }
}
