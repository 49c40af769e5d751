//! Running a short helper program (an emulator's `--version`, the setuid
//! probe) with a deadline: a broken or hanging emulator must never hang
//! `qus status` or `qus test`.

use std::io::{self, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run `cmd` with stdout captured; kill it after `timeout`. Returns its
/// stdout (whatever the exit status).
pub fn output_within(cmd: &mut Command, timeout: Duration) -> io::Result<String> {
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {} ms", timeout.as_millis()),
            ));
        }
        // The programs run here finish in milliseconds; a short poll is
        // simpler than a reaper thread for a one-off CLI call.
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out)?;
    }
    Ok(out)
}
