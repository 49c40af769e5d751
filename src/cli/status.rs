//! `qus status [--json]`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::report;
use super::CommonArgs;
use crate::engine;
use crate::observe::Request;
use crate::state::{Liveness, StateDir};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object (schema in docs/json.md) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Only check that a qusd using this state dir is running and ready
    /// (exit 0) or not (exit 1); for container readiness probes.
    #[arg(long, conflicts_with = "json")]
    pub daemon: bool,
    /// Exit 1 when any entry is not as wanted (missing, disabled, stale,
    /// conflict, refused, orphaned, or a custom entry without its
    /// interpreter); for scripts and health checks.
    #[arg(long, conflicts_with = "daemon")]
    pub check: bool,
    /// Show only the rows that need attention (the states --check counts).
    #[arg(long, conflicts_with = "daemon")]
    pub problems: bool,
    /// Also show each emulator's QEMU version (always in --json).
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(common: &CommonArgs, args: &StatusArgs) -> Result<ExitCode> {
    if args.daemon {
        let state = StateDir::new(common.state_dir());
        return Ok(match state.read_daemon_status() {
            Some(st) if st.ready && state.daemon_alive(&st) == Liveness::Running => {
                println!("qusd {} is ready: {}", st.pid, st.status);
                ExitCode::SUCCESS
            }
            Some(st) if st.ready && state.daemon_alive(&st) == Liveness::RunningElsewhere => {
                println!(
                    "qusd (pid {} in its own pid namespace) is ready: {}",
                    st.pid, st.status
                );
                ExitCode::SUCCESS
            }
            Some(st) => {
                println!(
                    "qusd {} is not running (last status: {})",
                    st.pid, st.status
                );
                ExitCode::from(1)
            }
            None => {
                println!(
                    "no qusd has published its status in {}",
                    state.path().display()
                );
                ExitCode::from(1)
            }
        });
    }
    let (system, config_broken) = common.system_for_reading()?;
    let (world, plan) = engine::survey(&system, &Request::default())?;
    let mut report = report::build(&system, &world, &plan);
    engine::keep_caches(&system, &world);
    let problems = report
        .entries
        .iter()
        .filter(|e| report::needs_attention(e))
        .count();
    if args.problems {
        report.entries.retain(report::needs_attention);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::render(&report, args.verbose));
    }
    report::warn_credentials(&world);
    if args.check && problems > 0 {
        eprintln!("qus: {problems} entries are not as wanted");
        return Ok(ExitCode::from(1));
    }
    Ok(super::exit_status(config_broken))
}
