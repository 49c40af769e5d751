//! `qus unregister [ARCH…] [--all]`: remove entries qus owns.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::{check_arch_names, CommonArgs};
use crate::engine;

#[derive(Debug, Args)]
pub struct UnregisterArgs {
    /// Arches whose entries to remove.
    #[arg(value_name = "ARCH", conflicts_with = "all")]
    pub arches: Vec<String>,
    /// Remove every entry qus owns (qemu and custom ones).
    #[arg(long)]
    pub all: bool,
}

pub fn run(common: &CommonArgs, args: &UnregisterArgs) -> Result<ExitCode> {
    if args.arches.is_empty() && !args.all {
        eprintln!("error: name the arches to unregister, or pass --all");
        return Ok(ExitCode::from(2));
    }
    check_arch_names(&args.arches)?;
    let ctx = common.context()?;
    if !ctx.binfmt.is_mounted() {
        bail!(
            "binfmt_misc is not mounted at {}",
            ctx.binfmt.root().display()
        );
    }
    let names: Option<BTreeSet<String>> = (!args.all).then(|| {
        args.arches
            .iter()
            .map(|a| ctx.config.entry_name(a))
            .collect()
    });
    let outcome = engine::unregister(&ctx, names.as_ref())?;
    println!(
        "qus: {} removed, {} errors",
        outcome.kernel_writes - outcome.failed.len(),
        outcome.failed.len()
    );
    Ok(if outcome.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
