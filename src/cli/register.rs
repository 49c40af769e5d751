//! `qus register [ARCH…] [--flags F]`: one reconcile pass, then exit.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::{arch_names, CommonArgs};
use crate::binfmt::Flags;
use crate::engine;
use crate::observe::Request;
use crate::plan::Overrides;
use crate::plan::{EntryState, Mode, Plan};

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Only these arches (default: all that the configuration targets).
    /// Naming an arch registers it even if `qemu.targets` leaves it out;
    /// `exclude` and native arches still win.
    #[arg(value_name = "ARCH", value_delimiter = ',', value_parser = super::values::ArchParser, hide_possible_values = true)]
    pub arches: Vec<String>,
    /// Flags for the qemu entries of this run (any of P O C F).
    #[arg(long, value_name = "FLAGS", value_parser = super::values::FlagsParser)]
    pub flags: Option<Flags>,
    /// Print the whole plan (mounting and switching on binfmt_misc
    /// included) and change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// With --dry-run: the plan as one JSON object.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
    /// No summary on stdout (`qus run`: stdout is the command's).
    #[arg(skip)]
    pub quiet: bool,
}

pub fn run(common: &CommonArgs, args: &RegisterArgs) -> Result<ExitCode> {
    // `all` means "every arch the table has, whatever targets says", but
    // an arch without an emulator is then no failure: qus registers what
    // it finds, as with `targets = ["all"]`.
    let all = args.arches.iter().any(|a| a == "all");
    let arches = if all {
        vec!["all".to_string()]
    } else {
        arch_names(&args.arches)?
    };
    let system = common.system()?;
    let named = !arches.is_empty() && !all;
    let scope: Option<BTreeSet<String>> =
        named.then(|| arches.iter().map(|a| system.config.entry_name(a)).collect());
    let request = Request {
        overrides: Overrides {
            targets: (named || all).then(|| arches.clone()),
            flags: args.flags,
        },
        ..Request::default()
    };
    let mode = Mode::Reconcile {
        takeover: system.config.takeover.value,
        scope,
        holds: BTreeSet::new(),
    };
    if args.dry_run {
        let dry = engine::dry_run(&system, &request, mode)?;
        report_items(&dry.plan, &dry.mode, named);
        return super::dry_run::print(&dry, system.binfmt.root(), args.json);
    }
    let pass = engine::run(&system, &request, mode)?;
    let (refused, missing) = report_items(&pass.plan, &pass.mode, named);
    if args.flags.is_some() {
        if let Some(note) = super::daemon_note(common) {
            eprintln!(
                "qus: note: {note} will put the configured flags back; set \
                 [qemu] flags (or [qemu.arch.NAME] flags) in a drop-in to keep them"
            );
        }
    }
    if named {
        warn_daemon_removes(common, &system.config, &arches);
    }
    if !args.quiet {
        println!(
            "qus: {}, {} writes to binfmt_misc",
            pass.summary(),
            pass.applied.kernel_writes
        );
    }
    // A named arch without an emulator, or a custom entry without its
    // interpreter, is not "nothing to do": it is a failure.
    Ok(
        if pass.applied.failed.is_empty() && refused == 0 && missing == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// Say on stderr what will not be (or was not) registered and why: the
/// refused, the conflicts, and named arches or custom entries without an
/// interpreter, excluded or native. Returns (refused, missing).
fn report_items(plan: &Plan, mode: &Mode, named: bool) -> (usize, usize) {
    let mut refused = 0;
    let mut missing = 0;
    for item in plan.items.iter().filter(|i| mode.in_scope(&i.name)) {
        // Details name files and entries from the system: shown escaped.
        let detail = crate::escape::clean(item.detail.as_deref().unwrap_or(""));
        match item.state {
            EntryState::Refused => {
                refused += 1;
                eprintln!("qus: refused {}: {detail}", item.name);
            }
            EntryState::Conflict => eprintln!("qus: conflict {}: {detail}", item.name),
            EntryState::NoInterpreter if named || item.arch.is_none() => {
                missing += 1;
                eprintln!(
                    "qus: {} not registered: {}",
                    item.name,
                    crate::escape::clean(item.detail.as_deref().unwrap_or("no interpreter"))
                );
            }
            EntryState::Excluded | EntryState::Native if named => {
                eprintln!(
                    "qus: {} not registered: {}: {detail}",
                    item.name,
                    item.state.as_str()
                );
            }
            _ => {}
        }
    }
    (refused, missing)
}

/// With qusd running, a named arch its configuration leaves out is
/// removed again at its next pass: say so, and how to keep it.
fn warn_daemon_removes(common: &CommonArgs, config: &crate::config::Config, arches: &[String]) {
    let left_out: Vec<&String> = arches
        .iter()
        .filter(|a| crate::plan::want::left_out(config, a))
        .collect();
    if left_out.is_empty() {
        return;
    }
    if let Some(note) = super::daemon_note(common) {
        let names: Vec<&str> = left_out.iter().map(|a| a.as_str()).collect();
        eprintln!(
            "qus: note: {note} will remove {} again: its configuration leaves {} out \
             (qemu.targets / qemu.exclude); `qus enable {}` keeps {} registered",
            names.join(", "),
            if names.len() == 1 { "it" } else { "them" },
            names.join(" "),
            if names.len() == 1 { "it" } else { "them" },
        );
    }
}
