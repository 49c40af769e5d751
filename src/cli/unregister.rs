//! `qus unregister [ARCH…] [--all]`: remove entries qus owns.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::{arch_names, CommonArgs};
use crate::engine;
use crate::observe::Request;
use crate::plan::Mode;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["arches", "all"])))]
pub struct UnregisterArgs {
    /// Arches whose entries to remove.
    #[arg(value_name = "ARCH", value_parser = super::values::ArchParser, hide_possible_values = true)]
    pub arches: Vec<String>,
    /// Remove every entry qus owns (qemu and custom ones).
    #[arg(long)]
    pub all: bool,
}

pub fn run(common: &CommonArgs, args: &UnregisterArgs) -> Result<ExitCode> {
    let arches = arch_names(&args.arches)?;
    let system = common.system()?;
    if !system.binfmt.is_mounted() {
        bail!(
            "binfmt_misc is not mounted at {}",
            system.binfmt.root().display()
        );
    }
    let names: Option<BTreeSet<String>> =
        (!args.all).then(|| arches.iter().map(|a| system.config.entry_name(a)).collect());
    let pass = engine::run(&system, &Request::default(), Mode::Unregister { names })?;
    for item in &pass.plan.items {
        if item.actions.is_empty() {
            match (&item.kernel, &item.detail) {
                (Some(_), Some(note)) => eprintln!("qus: {note}"),
                _ => eprintln!("qus: {} is not registered", item.name),
            }
        }
    }
    if let Some(note) = super::daemon_note(common) {
        eprintln!(
            "qus: note: {note} will register what its configuration asks for again; \
             use `qus disable ARCH` (or a drop-in) to keep an arch unregistered"
        );
    }
    let outcome = &pass.outcome;
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
