//! Tiny foreign programs shipped inside qus: each writes one fixed line
//! (`qus-probe ARCH`) with the `write` syscall and exits 0. They prove an
//! emulator really runs a binary of its arch. Sources and the script that
//! rebuilds them are in `probes/` (`build.sh` with Debian's cross binutils,
//! `gen.py` for arches without an assembler); the build of qus itself
//! needs neither. (The system call checks built beside them are in
//! `syscalls`.) hexagon's is assembled by LLVM (Debian has no hexagon
//! binutils). cris has none: no assembler anywhere in Debian, and only
//! QEMU 7.2 still ships the emulator (upstream dropped it in 11).

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
    probe!("hexagon"),
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

/// The pointer-authentication probe: a million calls of a function that
/// signs and checks its return address (`paciasp`/`autiasp`, which a CPU
/// without pointer authentication runs as NOPs), then its line. Timed
/// under an emulator's default CPU and under one without PAC, it tells
/// what today's arm64 programs (Debian 13 builds them all with branch
/// protection) pay for PAC under that QEMU (`qus test`).
pub static PAC_PROBE: Probe = Probe {
    arch: "aarch64-pac",
    program: include_bytes!("../probes/bin/aarch64-pac"),
};

/// The probe for an arch, if qus ships one.
pub fn find(arch: &str) -> Option<&'static Probe> {
    PROBES.iter().find(|p| p.arch == arch)
}

/// How one run of a probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResult {
    /// Printed the expected line and exited 0.
    Pass,
    /// The kernel refused to execute it: no binfmt_misc entry matched (or
    /// binfmt_misc is off) and the host cannot run it.
    ExecFormatError,
    /// Anything else, in words: crash signal, exit status, wrong output,
    /// timeout, or another exec error.
    Fail(String),
}

impl RunResult {
    /// Why the probe did not pass, in words; `None` when it passed.
    pub fn failure(&self) -> Option<String> {
        match self {
            RunResult::Pass => None,
            RunResult::ExecFormatError => Some("exec format error".into()),
            RunResult::Fail(why) => Some(why.clone()),
        }
    }
}

/// Run a probe through the kernel: its bytes go into a memfd that is
/// executed by path, so binfmt_misc (or the native loader) decides who runs
/// it, exactly as for any program. stdout/stderr go to memfds too, so a
/// hung interpreter's children cannot block qus; on timeout the whole
/// process group is killed.
pub fn run(probe: &Probe, timeout: std::time::Duration) -> RunResult {
    match start(probe) {
        Ok(running) => running.finish(timeout),
        Err(ended) => ended,
    }
}

/// Run a probe through one interpreter directly (`INTERPRETER PROBE`, as a
/// binfmt_misc entry without `P` starts it), not through the kernel's
/// choice of entry: to ask whether another tool's handler really runs an
/// arch before yielding the arch to it (an advertised but inactive
/// Rosetta fails every program).
pub fn run_through(
    probe: &Probe,
    interpreter: &std::path::Path,
    timeout: std::time::Duration,
) -> RunResult {
    match start_inner(probe, Some(interpreter), &[]) {
        Ok(Ok(running)) => running.finish(timeout),
        Ok(Err(ended)) => ended,
        Err(e) => RunResult::Fail(format!("could not run the probe: {e}")),
    }
}

/// A probe started and not waited for yet: whoever started it goes on
/// with other work (a cold `qus register` looks for emulators meanwhile)
/// and calls [`Running::finish`] when it needs the answer.
#[derive(Debug)]
pub struct Running {
    probe: Probe,
    child: std::process::Child,
    out: std::fs::File,
    err: std::fs::File,
}

/// Start a probe (see [`run`]); `Err` when it ended at once (the kernel
/// refused it, or it could not be started).
pub fn start(probe: &Probe) -> Result<Running, RunResult> {
    start_with_env(probe, &[])
}

/// [`start`] with these variables added to its environment (QEMU reads
/// `QEMU_CPU` and the like from the program's environment).
pub fn start_with_env(probe: &Probe, env: &[(&str, &str)]) -> Result<Running, RunResult> {
    match start_inner(probe, None, env) {
        Ok(started) => started,
        Err(e) => Err(RunResult::Fail(format!("could not run the probe: {e}"))),
    }
}

impl Running {
    /// Wait for it at most `timeout` (then kill its process group) and
    /// judge what it did.
    pub fn finish(mut self, timeout: std::time::Duration) -> RunResult {
        let pgid = self.child.id() as i32;
        let status = wait_bounded(&mut self.child, timeout);
        track(pgid, false);
        let judged = match status {
            Ok(Some(status)) => judge(&self.probe, status, &mut self.out, &mut self.err),
            Ok(None) => Ok(RunResult::Fail(format!(
                "timed out after {:.1} s",
                timeout.as_secs_f64()
            ))),
            Err(e) => Err(e),
        };
        judged.unwrap_or_else(|e| RunResult::Fail(format!("could not run the probe: {e}")))
    }
}

impl Running {
    /// Wait for it at most `timeout` and return its exit status: for
    /// programs whose answer is the status (the system call checks).
    pub fn exit_code(mut self, timeout: std::time::Duration) -> Result<i32, String> {
        use std::os::unix::process::ExitStatusExt;
        let pgid = self.child.id() as i32;
        let status = wait_bounded(&mut self.child, timeout);
        track(pgid, false);
        match status {
            Ok(Some(s)) => match (s.code(), s.signal()) {
                (Some(code), _) => Ok(code),
                (None, Some(sig)) => {
                    Err(format!("crashed with signal {sig} ({})", signal_name(sig)))
                }
                (None, None) => Err("ended without a status".into()),
            },
            Ok(None) => Err(format!("timed out after {:.1} s", timeout.as_secs_f64())),
            Err(e) => Err(format!("could not run the check: {e}")),
        }
    }
}

/// Process groups of the probes running now, so a stopping daemon can
/// end them at once instead of waiting for their timeouts.
static RUNNING: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Kill every probe running now (with its children). The waits on them
/// then return at once, so whatever ran them finishes quickly.
pub fn kill_running() {
    let groups = match RUNNING.lock() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    for pgid in groups {
        if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

fn track(pgid: i32, running: bool) {
    let mut groups = match RUNNING.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    if running {
        groups.push(pgid);
    } else {
        groups.retain(|g| *g != pgid);
    }
}

pub(crate) fn memfd(name: &str) -> std::io::Result<std::fs::File> {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
    Ok(std::fs::File::from(fd))
}

/// A memfd that may be executed: with `MFD_EXEC` where the kernel knows
/// it (6.3+), since under `vm.memfd_noexec = 1` a memfd is not executable
/// without it; plain on older kernels (which refuse the unknown flag).
pub(crate) fn exec_memfd(
    name: &str,
    flags: rustix::fs::MemfdFlags,
) -> std::io::Result<std::fs::File> {
    use rustix::fs::MemfdFlags;
    let fd = match rustix::fs::memfd_create(name, flags | MemfdFlags::EXEC) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create(name, flags)?,
        other => other?,
    };
    Ok(std::fs::File::from(fd))
}

fn start_inner(
    probe: &Probe,
    interpreter: Option<&std::path::Path>,
    env: &[(&str, &str)],
) -> std::io::Result<Result<Running, RunResult>> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;

    // No CLOEXEC: the child execs /proc/self/fd/N, which must stay open.
    let mut program = exec_memfd(
        &format!("qus-probe-{}", probe.arch),
        rustix::fs::MemfdFlags::empty(),
    )?;
    program.write_all(probe.program)?;
    let out = memfd("qus-probe-stdout")?;
    let err = memfd("qus-probe-stderr")?;
    let path = format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&program)
    );
    let mut command = match interpreter {
        Some(i) => {
            let mut c = std::process::Command::new(i);
            c.arg(&path);
            c
        }
        None => {
            let mut c = std::process::Command::new(&path);
            c.arg0(format!("qus-probe-{}", probe.arch));
            c
        }
    };
    command.envs(env.iter().copied());
    let spawned = command
        // An empty memfd, not /dev/null: a scratch container or chroot
        // may have no /dev.
        .stdin(memfd("qus-probe-stdin")?)
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .process_group(0)
        .spawn();
    drop(program);
    let child = match spawned {
        Ok(c) => c,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOEXEC.raw_os_error()) => {
            return Ok(Err(RunResult::ExecFormatError))
        }
        Err(e) => return Ok(Err(RunResult::Fail(format!("exec failed: {e}")))),
    };
    track(child.id() as i32, true);
    Ok(Ok(Running {
        probe: *probe,
        child,
        out,
        err,
    }))
}

/// Wait for the probe at most `timeout`; on timeout kill its whole process
/// group and return `None`.
fn wait_bounded(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let status = crate::child::wait_until_exit(child, timeout)?;
    if status.is_none() {
        if let Some(pgid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
        let _ = child.wait();
    }
    Ok(status)
}

/// What the probe's exit status and output say.
fn judge(
    probe: &Probe,
    status: std::process::ExitStatus,
    out: &mut std::fs::File,
    err: &mut std::fs::File,
) -> std::io::Result<RunResult> {
    use std::io::{Read, Seek};
    use std::os::unix::process::ExitStatusExt;
    let mut stdout = String::new();
    out.rewind()?;
    out.take(4096).read_to_string(&mut stdout).ok();
    let mut stderr = String::new();
    err.rewind()?;
    err.take(4096).read_to_string(&mut stderr).ok();
    let stderr = stderr.trim();
    let with_stderr = |s: String| {
        if stderr.is_empty() {
            s
        } else {
            format!(
                "{s}; stderr: {}",
                crate::escape::escape_readable(stderr.as_bytes())
            )
        }
    };
    if let Some(sig) = status.signal() {
        return Ok(RunResult::Fail(with_stderr(format!(
            "crashed with signal {sig} ({})",
            signal_name(sig)
        ))));
    }
    match status.code() {
        // QEMU 11's ppc emulators first print "Could not resolve
        // /proc/self/fd/N" (to stdout) when the program's path has no
        // real file behind it, as a memfd's has not: the program itself
        // still ran, so its line at the end is what counts.
        Some(0) if stdout.ends_with(&probe.expected_output()) => Ok(RunResult::Pass),
        Some(0) => Ok(RunResult::Fail(with_stderr(format!(
            "wrong output: {:?} instead of {:?}",
            stdout,
            probe.expected_output()
        )))),
        Some(code) => Ok(RunResult::Fail(with_stderr(format!(
            "exited with status {code}"
        )))),
        None => Ok(RunResult::Fail("ended without a status".into())),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => "signal",
    }
}
