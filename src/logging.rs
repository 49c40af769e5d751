//! Logging through `tracing`: to the journal natively under systemd, to
//! stderr elsewhere.
//!
//! Under systemd (`JOURNAL_STREAM` names our stderr) qusd's lines go to
//! journald with real priorities (ERROR 3, WARN 4, INFO 6, DEBUG/TRACE 7),
//! so `journalctl -u qusd -p warning` shows only what needs attention, and
//! with the structured fields of each event prefixed `QUS_`:
//! `QUS_ENTRY=qemu-aarch64`, `QUS_ARCH=aarch64`, `QUS_ACTION=registered`.
//! Elsewhere (a terminal, a container's log, a test) lines are plain text
//! with the message only; the fields would be noise there. `RUST_LOG`
//! overrides the level.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `default_level` applies when `RUST_LOG`
/// is unset; `timestamps` is ignored under journald.
pub fn init(default_level: &str, timestamps: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    if stderr_is_journal() {
        if let Ok(journal) = tracing_journald::layer() {
            let journal = journal
                .with_field_prefix(Some("QUS".into()))
                .with_priority_mappings(priorities());
            // try_init: a second call (tests) keeps the first subscriber.
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(journal)
                .try_init();
            return;
        }
    }
    let message_only = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        if field.name() == "message" {
            // Names in log lines come from the system: escaped, so a file
            // called "x\nINFO registered …" forges no line.
            write!(w, "{}", crate::escape::clean(&format!("{value:?}")))
        } else {
            Ok(())
        }
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .fmt_fields(message_only)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if timestamps {
        builder.try_init()
    } else {
        builder.without_time().try_init()
    };
}

/// syslog priorities as journald users expect them: INFO is
/// "informational" (6), not "notice".
fn priorities() -> tracing_journald::PriorityMappings {
    use tracing_journald::Priority;
    let mut p = tracing_journald::PriorityMappings::new();
    p.info = Priority::Informational;
    p.debug = Priority::Debug;
    p.trace = Priority::Debug;
    p
}

/// Is stderr connected to the journal? systemd sets `JOURNAL_STREAM` to
/// `DEV:INODE` of the stream it gave us; a child that inherited the
/// variable but writes elsewhere (a pipe, a file) must not use it.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream.to_string_lossy() == format!("{}:{}", meta.dev(), meta.ino())
}
