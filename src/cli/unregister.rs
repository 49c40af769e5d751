//! `qus unregister [ARCH…] [--all]`: remove entries qus owns.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::{arch_names, CommonArgs};
use crate::engine;
use crate::observe::Request;
use crate::plan::{Action, Mode};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["arches", "all"])))]
pub struct UnregisterArgs {
    /// Arches whose entries to remove.
    #[arg(value_name = "ARCH", value_delimiter = ',', value_parser = super::values::ArchParser, hide_possible_values = true)]
    pub arches: Vec<String>,
    /// Remove every entry qus owns (qemu and custom ones).
    #[arg(long)]
    pub all: bool,
    /// Print the plan (removals and what is put back) and change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// With --dry-run: the plan as one JSON object.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
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
    let mode = Mode::Unregister { names };
    if args.dry_run {
        let dry = engine::dry_run(&system, &Request::default(), mode)?;
        return super::dry_run::print(&dry, system.binfmt.root(), args.json);
    }
    let pass = engine::run(&system, &Request::default(), mode)?;
    for item in &pass.plan.items {
        if item.actions.is_empty() {
            match (&item.kernel, &item.detail) {
                (Some(_), Some(note)) => eprintln!("qus: {}", crate::escape::clean(note)),
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
    let kept = pass
        .plan
        .items
        .iter()
        .filter(|i| i.actions.is_empty() && i.owned && i.kernel.is_some() && i.detail.is_some())
        .count();
    let outcome = &pass.applied;
    let count = |f: fn(&Action) -> bool| outcome.done.iter().filter(|a| f(a)).count();
    let removed = count(|a| matches!(a, Action::Unregister { .. }));
    let restored = count(|a| matches!(a, Action::Restore { .. }));
    let mut line = format!("qus: {removed} removed");
    if restored > 0 {
        line.push_str(&format!(
            ", {restored} restored (the entries qus had taken over)"
        ));
    }
    println!("{line}, {} errors", outcome.failed.len());
    Ok(if outcome.failed.is_empty() && kept == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
