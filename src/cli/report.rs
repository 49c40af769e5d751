//! The status report: what `qus status` prints, for people and as JSON.
//!
//! The JSON form is a stable interface (documented in docs/json.md); fields
//! are only ever added.

use std::fmt::Write as _;

use serde::Serialize;

use crate::escape::clean;
use crate::model::World;
use crate::observe::{self, System};
use crate::plan::{EntryState, Item, Plan};
use crate::userns::Instance;

const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Report {
    pub version: u32,
    pub host: HostReport,
    pub binfmt_misc: BinfmtReport,
    pub state_dir: String,
    pub entries: Vec<EntryReport>,
    pub summary: std::collections::BTreeMap<&'static str, usize>,
}

#[derive(Debug, Serialize)]
pub struct HostReport {
    pub machine: String,
    pub family: String,
}

#[derive(Debug, Serialize)]
pub struct BinfmtReport {
    pub path: String,
    pub mounted: bool,
    /// The global switch; `null` when not mounted.
    pub enabled: Option<bool>,
    /// `host` (initial user namespace), `private` (a user namespace's own
    /// instance, Linux ≥ 6.7) or `ancestor` (a parent namespace's, seen
    /// from a child: read-only there).
    pub instance: Instance,
}

#[derive(Debug, Serialize)]
pub struct EntryReport {
    pub name: String,
    /// Table arch for qemu entries, `null` for custom entries.
    pub arch: Option<String>,
    pub state: EntryState,
    pub owned: bool,
    /// The interpreter qus wants, else the kernel's.
    pub interpreter: Option<String>,
    /// Flags qus wants, else the kernel's, in kernel order.
    pub flags: Option<String>,
    pub detail: Option<String>,
    /// What the kernel holds under this name, if anything.
    pub kernel: Option<KernelReport>,
    /// For an arch: every enabled entry that catches its programs, in the
    /// kernel's match order.
    pub handlers: Vec<String>,
    /// For an arch: the entry the kernel uses for its programs (the first
    /// of `handlers`), whoever owns it.
    pub used: Option<String>,
    /// The QEMU version of the wanted emulator (`--version`, cached by
    /// file identity), when qus wants an entry here.
    pub emulator_version: Option<String>,
    /// Known failures of that QEMU version for this arch
    /// (`version::KNOWN`); empty when none or the version is unknown.
    pub known_failures: Vec<&'static str>,
    /// Why the kernel entry's interpreter could be replaced by someone
    /// other than root (whoever registered it); `null` when it cannot.
    /// `status --check` fails on it.
    pub unsafe_interpreter: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct KernelReport {
    pub enabled: bool,
    pub interpreter: String,
    pub flags: String,
}

pub fn build(system: &System, world: &World, plan: &Plan) -> Report {
    let mounted = world.mounted;
    let versions = &system.versions;
    let entries: Vec<EntryReport> = plan
        .items
        .iter()
        .map(|item| {
            let mut e = entry_report(item);
            e.unsafe_interpreter = item
                .kernel
                .as_ref()
                .and(world.risky.get(&item.name))
                .cloned();
            let desired = world
                .wanted
                .items
                .iter()
                .find(|w| w.name == item.name && w.arch.is_some())
                .and_then(|w| w.want.as_ref().ok());
            e.emulator_version =
                desired.and_then(|d| versions.of(&d.spec.interpreter, &d.identity));
            e.known_failures = e
                .emulator_version
                .as_deref()
                .map(|v| {
                    crate::observe::version::known_failures(v, e.arch.as_deref().unwrap_or(""))
                })
                .unwrap_or_default();
            e
        })
        .collect();
    let mut entries = entries;
    entries.extend(foreign_rows(world, plan));
    let mut summary = std::collections::BTreeMap::new();
    for e in &entries {
        *summary.entry(e.state.as_str()).or_insert(0) += 1;
    }
    Report {
        version: SCHEMA_VERSION,
        host: HostReport {
            machine: system.host.machine.clone(),
            family: system.host.family.clone(),
        },
        binfmt_misc: BinfmtReport {
            path: system.binfmt.root().display().to_string(),
            mounted,
            enabled: world.enabled,
            instance: observe::instance(system.binfmt.root()),
        },
        state_dir: system.state.path().display().to_string(),
        entries,
        summary,
    }
}

/// Every kernel entry the plan has no row for (another tool's, not
/// configured in qus), in the kernel's match order: `qus status` shows the
/// kernel's whole table, as `update-binfmts --display` does.
fn foreign_rows(world: &World, plan: &Plan) -> Vec<EntryReport> {
    let planned: std::collections::BTreeSet<&str> =
        plan.items.iter().map(|i| i.name.as_str()).collect();
    world
        .match_order
        .iter()
        .filter(|name| !planned.contains(name.as_str()))
        .filter_map(|name| {
            let k = world.kernel.get(name)?;
            // The arches whose programs it catches, if any.
            let catches: Vec<&str> = world
                .handlers
                .iter()
                .filter(|(_, hs)| hs.contains(name))
                .map(|(a, _)| a.as_str())
                .collect();
            let who = if world.distro.contains(name) {
                "the distribution's entry"
            } else {
                "another tool's entry"
            };
            let off = if k.enabled { "" } else { ", disabled" };
            let detail = match catches.as_slice() {
                [] => format!("{who}{off}; left alone"),
                arches => format!(
                    "{who}{off}, runs {} programs; left alone",
                    arches.join(", ")
                ),
            };
            Some(EntryReport {
                name: name.clone(),
                arch: catches.first().map(|a| a.to_string()),
                state: EntryState::Foreign,
                owned: false,
                interpreter: Some(k.spec.interpreter.display().to_string()),
                flags: Some(k.spec.flags.normalized().to_string()),
                detail: Some(detail),
                kernel: Some(KernelReport {
                    enabled: k.enabled,
                    interpreter: k.spec.interpreter.display().to_string(),
                    flags: k.spec.flags.to_string(),
                }),
                handlers: Vec::new(),
                used: None,
                emulator_version: None,
                known_failures: vec![],
                unsafe_interpreter: world.risky.get(name).cloned(),
            })
        })
        .collect()
}

/// Does this row need someone's attention? (What `status --check` counts.)
/// An arch without an emulator does not: most hosts lack some.
pub fn needs_attention(e: &EntryReport) -> bool {
    if e.unsafe_interpreter.is_some() {
        return true;
    }
    match e.state {
        EntryState::Missing
        | EntryState::Disabled
        | EntryState::Stale
        | EntryState::Conflict
        | EntryState::Refused
        | EntryState::Orphaned => true,
        EntryState::NoInterpreter => e.arch.is_none(),
        _ => false,
    }
}

fn entry_report(item: &Item) -> EntryReport {
    let spec = item
        .wanted
        .as_ref()
        .or(item.kernel.as_ref().map(|k| &k.spec));
    EntryReport {
        name: item.name.clone(),
        arch: item.arch.clone(),
        state: item.state,
        owned: item.owned,
        interpreter: spec.map(|s| s.interpreter.display().to_string()),
        flags: spec.map(|s| s.flags.normalized().to_string()),
        detail: item.detail.clone(),
        kernel: item.kernel.as_ref().map(|k| KernelReport {
            enabled: k.enabled,
            interpreter: k.spec.interpreter.display().to_string(),
            flags: k.spec.flags.to_string(),
        }),
        handlers: item.handlers.clone(),
        used: item.handlers.first().cloned(),
        emulator_version: None,
        known_failures: vec![],
        unsafe_interpreter: None,
    }
}

/// The table for people; `verbose` adds each emulator's QEMU version.
pub fn render(report: &Report, verbose: bool) -> String {
    let mut s = String::new();
    let b = &report.binfmt_misc;
    let _ = writeln!(
        s,
        "host:        {} (family {})",
        report.host.machine, report.host.family
    );
    let _ = writeln!(
        s,
        "binfmt_misc: {} ({}, {})\ninstance:    {}",
        b.path,
        if b.mounted { "mounted" } else { "not mounted" },
        match b.enabled {
            Some(true) => "enabled",
            Some(false) => "DISABLED",
            None => "status unknown",
        },
        b.instance.describe()
    );
    let _ = writeln!(s, "state dir:   {}", report.state_dir);
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<20} {:<13} {:<15} {:<5} {:<5} INTERPRETER / DETAIL",
        "ENTRY", "ARCH", "STATE", "FLAGS", "OWNED"
    );
    for e in &report.entries {
        let shown = detail_cell(e, verbose);
        let flags = flags_cell(e);
        let _ = writeln!(
            s,
            "{:<20} {:<13} {:<15} {:<5} {:<5} {}",
            clean(&e.name),
            e.arch.as_deref().unwrap_or("-"),
            e.state.as_str(),
            flags,
            if e.owned { "yes" } else { "no" },
            clean(&shown)
        );
    }
    if report.entries.is_empty() {
        let _ = writeln!(s, "(no rows to show)");
    }
    let _ = writeln!(s);
    let summary: Vec<String> = report
        .summary
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let _ = writeln!(s, "{}", summary.join(", "));
    let unsafe_rows = report
        .entries
        .iter()
        .filter(|e| e.unsafe_interpreter.is_some())
        .count();
    if unsafe_rows > 0 {
        let _ = writeln!(
            s,
            "{unsafe_rows} entries with an interpreter someone other than root could replace: \
             whoever can, runs their code for every matching program (with C, as root)"
        );
    }
    s
}

/// The INTERPRETER / DETAIL cell of one row: the interpreter (with the
/// detail) where there is an entry to speak of, else the detail; a mark
/// for an interpreter others could replace; `verbose` adds the QEMU version.
fn detail_cell(e: &EntryReport, verbose: bool) -> String {
    let shown = match e.state {
        EntryState::Registered
        | EntryState::Missing
        | EntryState::Disabled
        | EntryState::Stale
        | EntryState::Foreign => e
            .interpreter
            .clone()
            .map(|i| match &e.detail {
                Some(d) => format!("{i} ({d})"),
                None => i,
            })
            .unwrap_or_default(),
        _ => e.detail.clone().unwrap_or_default(),
    };
    let shown = match &e.unsafe_interpreter {
        Some(why) => format!("{shown} UNSAFE INTERPRETER: {why}"),
        None => shown,
    };
    match (&e.emulator_version, verbose) {
        (Some(v), true) if e.known_failures.is_empty() => format!("{shown} [QEMU {v}]"),
        (Some(v), true) => format!("{shown} [QEMU {v}; known: {}]", e.known_failures.join("; ")),
        _ => shown,
    }
}

/// The FLAGS cell: the flags where an entry is or should be, else `-`.
fn flags_cell(e: &EntryReport) -> String {
    match e.state {
        EntryState::Registered
        | EntryState::Missing
        | EntryState::Disabled
        | EntryState::Stale
        | EntryState::Conflict
        | EntryState::Foreign => e
            .flags
            .clone()
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "-".into()),
        _ => "-".into(),
    }
}

/// Say, on stderr, what every `C` entry (qus's or another tool's) means:
/// QEMU then runs a setuid program with its owner's credentials but
/// reads its own settings from the caller's environment
/// (`QEMU_LOG_FILENAME`, `QEMU_GDB`, `QEMU_LD_PREFIX`, …), so any foreign
/// setuid program a user can reach is a root shell for that user.
pub fn warn_credentials(world: &World) {
    for name in &world.match_order {
        let Some(e) = world.kernel.get(name) else {
            continue;
        };
        if e.spec.flags.credentials {
            eprintln!(
                "qus: warning: {name} has the C flag: any foreign setuid program a user can \
                 run through it runs as its owner (root), and QEMU takes its settings from \
                 that user's environment (QEMU_LOG_FILENAME, QEMU_GDB, …): every such \
                 program is a root shell for every local user. Keep C only where all \
                 users are trusted (see \"The C flag\" in docs/ownership-and-safety.md)."
            );
        }
    }
}
