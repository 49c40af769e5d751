//! qusd's hold on its state dir (one qusd per state dir) and the status
//! it publishes (`qusd.json`) for `qus status --daemon`.

use std::fs::{self, File};
use std::io;

use rustix::fs::OFlags;
use serde::{Deserialize, Serialize};

use super::lock::open_lock;
use super::{read_only, StateDir};
use crate::dirfd::Dir;
use crate::fsutil::with_path;

const DAEMON_FILE: &str = "qusd.json";
const PID_FILE: &str = "qusd.pid";

/// What a running qusd publishes about itself (`STATE_DIR/qusd.json`), for
/// `qus status --daemon` (readiness/liveness probes in containers, where
/// there is no systemd to ask).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DaemonStatus {
    pub pid: u32,
    /// The process's start time (field 22 of `/proc/PID/stat`), so a pid
    /// reused by another process after a crash is not taken for qusd.
    #[serde(default)]
    pub start_time: u64,
    pub ready: bool,
    pub status: String,
}

/// A running qusd's hold on its state dir (see [`StateDir::claim_daemon`]).
#[derive(Debug)]
pub struct Claim {
    _dir: Dir,
    _pid_file: Option<File>,
}

/// Whether the qusd behind a published status still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Its pid runs, and it is the same process.
    Running,
    /// Its pid is not visible here, but it holds the state dir's claim
    /// (it runs in another pid namespace).
    RunningElsewhere,
    Gone,
}

/// This process as `/proc` shows it: its pid there and its start time.
/// In a pid namespace with another namespace's `/proc` (a container
/// started without its own), `getpid()` names some other process of that
/// `/proc`; `/proc/self` names this one. `(getpid(), 0)` when `/proc`
/// does not show this process at all.
pub fn own_process() -> (u32, u64) {
    let shown = fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse::<u32>().ok());
    match shown.and_then(|pid| Some((pid, process_start_time(pid)?))) {
        Some(seen) => seen,
        None => (std::process::id(), 0),
    }
}

/// The start time of a process, in clock ticks since boot.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl StateDir {
    /// Publish the daemon's status (atomically).
    pub fn write_daemon_status(&self, st: &DaemonStatus) -> io::Result<()> {
        let text =
            serde_json::to_string(st).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.write_unsynced(DAEMON_FILE, text.as_bytes())
    }

    /// Is the qusd that published `st` alive? Its pid is checked with its
    /// start time (a reused pid is not qusd); a qusd in another pid
    /// namespace (a container's, with the host's `/proc` here) publishes a
    /// pid this `/proc` does not show, so then the claim on `qusd.pid`
    /// decides: a qusd holds a lock on the directory for as long as it runs.
    pub fn daemon_alive(&self, st: &DaemonStatus) -> Liveness {
        if process_start_time(st.pid) == Some(st.start_time) {
            return Liveness::Running;
        }
        let claimed = self
            .readable()
            .and_then(|d| {
                d.open_file(PID_FILE, OFlags::RDONLY | OFlags::NONBLOCK, 0)
                    .ok()
            })
            .is_some_and(|f| matches!(f.try_lock_shared(), Err(fs::TryLockError::WouldBlock)));
        if claimed {
            Liveness::RunningElsewhere
        } else {
            Liveness::Gone
        }
    }

    /// The published daemon status, if any.
    pub fn read_daemon_status(&self) -> Option<DaemonStatus> {
        let text = self.readable()?.read(DAEMON_FILE).ok()??;
        serde_json::from_str(&text).ok()
    }

    /// Claim the state dir for one qusd: an exclusive lock on the
    /// directory itself (which needs no write access, so two qusd on a
    /// read-only state dir still exclude each other) and on `qusd.pid`
    /// (mode 0600, holding the pid) where that can be written. Held as long
    /// as the returned claim lives. A second qusd gets an error naming the
    /// first one's pid. `Ok(None)` when the state dir does not exist and
    /// cannot be made (there is nothing to share then).
    pub fn claim_daemon(&self) -> io::Result<Option<Claim>> {
        let dir = match self.prepare() {
            Ok(d) => d,
            Err(e) if read_only(&e) && self.trusted().is_ok() => return Ok(None),
            Err(e) => return Err(e),
        };
        let taken = || {
            let pid = dir.read(PID_FILE).ok().flatten().unwrap_or_default();
            let pid = match pid.trim() {
                "" => "unknown".to_string(),
                p => p.to_string(),
            };
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another qusd (pid {pid}) is already running on state dir {}; \
                     stop it first, or give this one another --state-dir",
                    self.dir.display()
                ),
            )
        };
        if !dir.try_lock(true)? {
            return Err(taken());
        }
        let path = self.dir.join(PID_FILE);
        let pid_file = match open_lock(&dir, PID_FILE) {
            Ok(mut file) => {
                match file.try_lock() {
                    Ok(()) => {}
                    Err(fs::TryLockError::WouldBlock) => return Err(taken()),
                    Err(fs::TryLockError::Error(e)) => return Err(with_path(e, &path)),
                }
                file.set_len(0).map_err(|e| with_path(e, &path))?;
                io::Write::write_all(&mut file, format!("{}\n", own_process().0).as_bytes())
                    .map_err(|e| with_path(e, &path))?;
                Some(file)
            }
            Err(e) if read_only(&e) => None,
            Err(e) => return Err(e),
        };
        Ok(Some(Claim {
            _dir: dir,
            _pid_file: pid_file,
        }))
    }

    /// Withdraw it (clean stop), unless another process published since.
    pub fn clear_daemon_status(&self, pid: u32) {
        if self.read_daemon_status().is_some_and(|st| st.pid == pid) {
            if let Some(dir) = self.readable() {
                let _ = dir.remove(DAEMON_FILE);
            }
        }
    }
}
