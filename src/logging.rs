//! Logging to stderr through `tracing`, journald-friendly.
//!
//! Under systemd (`JOURNAL_STREAM` set) the journal stamps each line itself,
//! so qus prints no timestamp of its own; `RUST_LOG` overrides the level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `default_level` applies when `RUST_LOG`
/// is unset; `timestamps` is ignored under journald.
pub fn init(default_level: &str, timestamps: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = if timestamps && !under_journal {
        builder.try_init()
    } else {
        builder.without_time().try_init()
    };
}
