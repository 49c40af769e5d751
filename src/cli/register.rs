//! `qus register [ARCH…] [--flags F]`: one reconcile pass, then exit.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::{arch_names, CommonArgs};
use crate::binfmt::Flags;
use crate::engine;
use crate::observe::{Overrides, Request};
use crate::plan::{Mode, State};

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Only these arches (default: all that the configuration targets).
    /// Naming an arch registers it even if `qemu.targets` leaves it out;
    /// `exclude` and native arches still win.
    #[arg(value_name = "ARCH")]
    pub arches: Vec<String>,
    /// Flags for the qemu entries of this run (any of P O C F).
    #[arg(long, value_name = "FLAGS")]
    pub flags: Option<String>,
    /// No summary on stdout (`qus run`: stdout is the command's).
    #[arg(skip)]
    pub quiet: bool,
}

pub fn run(common: &CommonArgs, args: &RegisterArgs) -> Result<ExitCode> {
    let arches = arch_names(&args.arches)?;
    let flags = match &args.flags {
        Some(f) => Some(Flags::parse(f).map_err(|e| anyhow::anyhow!("--flags: {e}"))?),
        None => None,
    };
    let system = common.system()?;
    let named = !arches.is_empty();
    let scope: Option<BTreeSet<String>> =
        named.then(|| arches.iter().map(|a| system.config.entry_name(a)).collect());
    let request = Request {
        overrides: Overrides {
            targets: named.then(|| arches.clone()),
            flags,
        },
        native: None,
        restore: Default::default(),
    };
    let mode = Mode::Reconcile {
        takeover: system.config.takeover.value,
        scope,
        holds: BTreeSet::new(),
    };
    let pass = engine::run(&system, &request, mode)?;
    let mut refused = 0;
    for item in pass
        .plan
        .items
        .iter()
        .filter(|i| pass.mode.in_scope(&i.name))
    {
        match item.state {
            State::Refused => {
                refused += 1;
                eprintln!(
                    "qus: refused {}: {}",
                    item.name,
                    item.detail.as_deref().unwrap_or("")
                );
            }
            State::Conflict => eprintln!(
                "qus: conflict {}: {}",
                item.name,
                item.detail.as_deref().unwrap_or("")
            ),
            State::Excluded | State::Native | State::NoInterpreter if named => {
                eprintln!(
                    "qus: {} not registered: {}: {}",
                    item.name,
                    item.state.as_str(),
                    item.detail.as_deref().unwrap_or("")
                );
            }
            _ => {}
        }
    }
    if args.flags.is_some() {
        if let Some(note) = super::daemon_note(common) {
            eprintln!(
                "qus: note: {note} will put the configured flags back; set \
                 [qemu] flags (or [qemu.arch.NAME] flags) in a drop-in to keep them"
            );
        }
    }
    if !args.quiet {
        println!(
            "qus: {}, {} writes to binfmt_misc",
            pass.summary(),
            pass.outcome.kernel_writes
        );
    }
    Ok(if pass.outcome.failed.is_empty() && refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
