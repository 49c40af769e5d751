//! `qus register [ARCH…] [--flags F]`: one reconcile pass, then exit.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::{check_arch_names, CommonArgs};
use crate::binfmt::Flags;
use crate::engine;
use crate::observe::Overrides;
use crate::plan::State;

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
}

pub fn run(common: &CommonArgs, args: &RegisterArgs) -> Result<ExitCode> {
    check_arch_names(&args.arches)?;
    let flags = match &args.flags {
        Some(f) => Some(Flags::parse(f).map_err(|e| anyhow::anyhow!("--flags: {e}"))?),
        None => None,
    };
    let ctx = common.context()?;
    let (overrides, scope) = if args.arches.is_empty() {
        (
            Overrides {
                targets: None,
                flags,
            },
            None,
        )
    } else {
        let scope: BTreeSet<String> = args
            .arches
            .iter()
            .map(|a| ctx.config.entry_name(a))
            .collect();
        (
            Overrides {
                targets: Some(args.arches.clone()),
                flags,
            },
            Some(scope),
        )
    };
    let pass = engine::reconcile(&ctx, &overrides, scope.clone())?;
    let in_scope = |name: &str| scope.as_ref().is_none_or(|s| s.contains(name));
    let mut refused = 0;
    for item in pass.plan.items.iter().filter(|i| in_scope(&i.name)) {
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
            State::Excluded | State::Native | State::NoInterpreter if !args.arches.is_empty() => {
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
    println!(
        "qus: {}, {} writes to binfmt_misc",
        pass.summary(),
        pass.outcome.kernel_writes
    );
    Ok(if pass.outcome.failed.is_empty() && refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
