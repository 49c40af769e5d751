//! `--dry-run` of `qus register` and `qus unregister`: the whole plan,
//! the preparation of binfmt_misc included, printed and not applied.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::engine::DryRun;
use crate::plan::Action;

/// The plan as `--json` prints it.
#[derive(Debug, Serialize)]
struct PlanReport<'a> {
    dry_run: bool,
    binfmt_misc: &'a std::path::Path,
    mounted: bool,
    enabled: Option<bool>,
    /// Every action, in the order apply would take them.
    actions: Vec<ActionReport>,
    /// Writes to binfmt_misc the actions take (a replace is two).
    kernel_writes: usize,
    /// Per entry in scope: its state now and why.
    entries: Vec<DryEntry<'a>>,
}

#[derive(Debug, Serialize)]
struct ActionReport {
    action: &'static str,
    /// The entry, or empty for binfmt_misc as a whole (mount, switch-on).
    entry: String,
    description: String,
    kernel_writes: usize,
}

#[derive(Debug, Serialize)]
struct DryEntry<'a> {
    name: &'a str,
    arch: Option<&'a str>,
    state: &'static str,
    detail: Option<&'a str>,
}

/// Print the plan; exit 0, as planning is all a dry run does.
pub fn print(dry: &DryRun, binfmt_misc: &std::path::Path, json: bool) -> Result<ExitCode> {
    let actions = dry.actions();
    let writes: usize = actions.iter().map(Action::kernel_writes).sum();
    if json {
        let report = PlanReport {
            dry_run: true,
            binfmt_misc,
            mounted: dry.world.mounted,
            enabled: dry.world.enabled,
            actions: actions
                .iter()
                .map(|a| ActionReport {
                    action: a.verb(),
                    entry: a.entry().to_string(),
                    description: a.describe(),
                    kernel_writes: a.kernel_writes(),
                })
                .collect(),
            kernel_writes: writes,
            entries: dry
                .plan
                .items
                .iter()
                .filter(|i| dry.mode.in_scope(&i.name))
                .map(|i| DryEntry {
                    name: &i.name,
                    arch: i.arch.as_deref(),
                    state: i.state.as_str(),
                    detail: i.detail.as_deref(),
                })
                .collect(),
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    for note in &dry.preparation.notes {
        eprintln!("qus: note: {note}");
    }
    if actions.is_empty() {
        println!("qus: dry run: nothing to do; binfmt_misc is as configured");
        return Ok(ExitCode::SUCCESS);
    }
    println!("qus: dry run: would");
    for a in &actions {
        println!("  {}", a.describe());
    }
    println!(
        "qus: dry run: {} actions, {writes} writes to binfmt_misc; nothing was changed",
        actions.len()
    );
    Ok(ExitCode::SUCCESS)
}
