//! Waiting for a child with a deadline, and running a short helper
//! program (an emulator's `--version`, the setuid probe) with one: a
//! broken or hanging emulator must never hang `qus status`, `qus test` or
//! a native probe.

use std::io::{self, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Wait for `child` to exit, at most `timeout`; `None` when it is still
/// running then (the caller decides what to kill).
///
/// Wakes exactly when the child exits: poll(2) on a pidfd, bounded by the
/// time left (no sleeping in between, which on a busy machine costs a
/// scheduling round each time). Without pidfds (Linux < 5.3) it falls
/// back to a doubling pause.
pub fn wait_until_exit(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let start = Instant::now();
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_child(child),
        rustix::process::PidfdFlags::empty(),
    )
    .ok();
    let mut pause = Duration::from_micros(20);
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return Ok(None);
        }
        match &pidfd {
            Some(fd) => {
                let left = timeout - elapsed;
                let ts = rustix::event::Timespec {
                    tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                    tv_nsec: i64::from(left.subsec_nanos()),
                };
                let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                match rustix::event::poll(&mut fds, Some(&ts)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
        }
    }
}

/// Run `cmd` with stdout captured; kill it after `timeout`. Returns its
/// stdout (whatever the exit status). For programs that print a line or
/// two: the output is read after the exit.
///
/// Bounded with its descendants: it runs in a process group of its own,
/// which is killed once it exits (or times out), so a background child
/// left holding stdout (an emulator's `--version` that forks) cannot
/// keep the read waiting; and the read itself stops at the deadline.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> io::Result<String> {
    use std::os::unix::process::CommandExt;
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).process_group(0).spawn()?;
    let group = rustix::process::Pid::from_child(&child);
    let exited = wait_until_exit(&mut child, timeout)?;
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {} ms", timeout.as_millis()),
        ));
    }
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        read_until(stdout, start + timeout, &mut out)?;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Read a pipe to its end, or until `deadline` (a writer that escaped the
/// process group may hold it open): what was read by then counts.
fn read_until(
    mut pipe: std::process::ChildStdout,
    deadline: Instant,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let ts = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&pipe, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        match pipe.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
