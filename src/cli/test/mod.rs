//! `qus test [ARCH…] [--json]`: prove each emulator runs a real foreign
//! program, by executing the arch's probe through the kernel.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::{arch_names, CommonArgs};
use crate::escape::clean;
use crate::model::Native;
use crate::observe::{self, Request};
mod setuid;
mod syscalls;

use crate::{arch, probe};
use setuid::Setuid;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Arches to test (default: every arch the kernel can run now,
    /// through an entry or natively).
    #[arg(value_name = "ARCH", value_delimiter = ',', value_parser = super::values::ArchParser, hide_possible_values = true)]
    pub arches: Vec<String>,
    /// One JSON object (schema in docs/json.md) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Seconds before a probe that has not finished counts as hung.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
    /// The user the setuid probe runs as (default: the overflow uid,
    /// `nobody`).
    #[arg(long, value_name = "UID", default_value_t = 65534)]
    pub setuid_user: u32,
}

/// The verdict on one arch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeResult {
    /// The probe ran through its binfmt_misc entry and printed its line.
    Pass,
    /// It did not: exec format error, crash, wrong output, hang, exit status.
    Fail,
    /// No enabled entry would catch it (or binfmt_misc is off).
    NotRegistered,
    /// The host runs it itself (and did).
    Native,
    /// qus ships no probe for this arch.
    NoProbe,
}

impl ProbeResult {
    fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Pass => "pass",
            ProbeResult::Fail => "fail",
            ProbeResult::NotRegistered => "not-registered",
            ProbeResult::Native => "native",
            ProbeResult::NoProbe => "no-probe",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ArchResult {
    pub arch: String,
    pub result: ProbeResult,
    /// The binfmt_misc entry that ran it, if any.
    pub entry: Option<String>,
    pub interpreter: Option<String>,
    pub detail: Option<String>,
    pub millis: Option<u64>,
    /// The QEMU version of the interpreter that ran it.
    pub emulator_version: Option<String>,
    /// Per system call `qus test` checks (see `syscalls`): whether the
    /// emulator has it. Only for arches that passed through an entry.
    pub syscalls: Option<std::collections::BTreeMap<&'static str, syscalls::Found>>,
    /// The checked calls it lacks that userlands do not cope without.
    pub lacking: Vec<&'static str>,
    /// aarch64 through an entry: what pointer authentication costs under
    /// the emulator's default CPU (see `pac_cost`); `null` otherwise.
    pub pac: Option<super::pac_cost::PacCost>,
}

#[derive(Debug, Serialize)]
pub struct TestReport {
    pub version: u32,
    pub binfmt_misc: String,
    pub results: Vec<ArchResult>,
    pub summary: std::collections::BTreeMap<&'static str, usize>,
    /// Do setuid programs keep their privileges under emulation (the `C`
    /// flag)? Checked with a setuid-root aarch64 program when aarch64 runs
    /// through an entry; `null` otherwise.
    pub setuid: Option<SetuidReport>,
}

#[derive(Debug, Serialize)]
pub struct SetuidReport {
    pub arch: &'static str,
    pub entry: String,
    /// Whether that entry has the `C` flag.
    pub c_flag: bool,
    #[serde(flatten)]
    pub found: Setuid,
}

pub fn run(common: &CommonArgs, args: &TestArgs) -> Result<ExitCode> {
    let arches = arch_names(&args.arches)?;
    let (system, config_broken) = common.system_for_reading()?;
    // A container's /proc has no binfmt_misc mounted (`docker run --rm
    // --privileged IMAGE test`), though the kernel's entries are there and
    // catch its programs: mount it, as root and where qus may mount at
    // all, to test what the kernel really has (the mount is this mount
    // namespace's, gone with the container).
    if rustix::process::geteuid().is_root() && system.config.binfmt_mount.value {
        if let Err(e) = crate::engine::mount(&system, true) {
            tracing::debug!("binfmt_misc not mounted, and mounting failed: {e}");
        }
    }
    let world = observe::observe(&system, &Request::default())?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let named = !arches.is_empty();

    let versions = &system.versions;
    let mut results = vec![];
    for a in arch::ARCHES {
        if named && !arches.iter().any(|n| n == a.name) {
            continue;
        }
        let result = test_arch(a, &world, timeout, versions);
        // Unnamed arches that cannot run are left out, not reported.
        let ran = !matches!(
            result.result,
            ProbeResult::NoProbe | ProbeResult::NotRegistered
        );
        if named || ran {
            results.push(result);
        }
    }
    crate::engine::keep_caches(&system, &world);
    if !named {
        results.extend(untested_entries(&world, &results));
    }
    let setuid = setuid_report(&world, &results, args.setuid_user, timeout);
    let mut summary = std::collections::BTreeMap::new();
    for r in &results {
        *summary.entry(r.result.as_str()).or_insert(0) += 1;
    }
    // C set and still no privileges: the entry does not do what it says.
    let setuid_broken = setuid
        .as_ref()
        .is_some_and(|s| s.c_flag && s.found == Setuid::NeedsC);
    let failed = setuid_broken
        || results.iter().any(|r| {
            r.result == ProbeResult::Fail || (named && r.result == ProbeResult::NotRegistered)
        });
    let report = TestReport {
        version: 1,
        binfmt_misc: system.binfmt.root().display().to_string(),
        results,
        summary,
        setuid,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    super::report::warn_credentials(&world);
    Ok(super::exit_status(failed || config_broken))
}

/// Run one arch's probe the way the kernel would pick its entry.
fn test_arch(
    a: &arch::Arch,
    world: &crate::model::World,
    timeout: Duration,
    versions: &crate::observe::version::Memo,
) -> ArchResult {
    let Some(probe) = probe::find(a.name) else {
        return ArchResult::untested(
            a.name,
            ProbeResult::NoProbe,
            "qus ships no probe program for this arch",
        );
    };
    // The entry the kernel itself would pick: the first in match order.
    let catcher = world.catcher(probe.program);
    let is_native = matches!(world.native.get(a.name), Some(Native::Yes(_)));
    if catcher.is_none() && !is_native {
        let why = if world.binfmt_live() {
            "no enabled binfmt_misc entry matches its binaries"
        } else {
            "binfmt_misc is not mounted or is disabled"
        };
        return ArchResult::untested(a.name, ProbeResult::NotRegistered, why);
    }
    let start = Instant::now();
    let outcome = probe::run(probe, timeout);
    let millis = Some(start.elapsed().as_millis() as u64);
    let detail = outcome.failure();
    let result = match (&detail, catcher) {
        (Some(_), _) => ProbeResult::Fail,
        (None, None) => ProbeResult::Native,
        (None, Some(_)) => ProbeResult::Pass,
    };
    // The system calls, for what an emulator runs (natively, the kernel
    // answers).
    let answers = (result == ProbeResult::Pass)
        .then(|| syscalls::check(a.name, timeout))
        .flatten();
    ArchResult {
        arch: a.name.into(),
        result,
        lacking: answers
            .as_ref()
            .map(|ans| syscalls::lacking(ans).iter().map(|c| c.name).collect())
            .unwrap_or_default(),
        syscalls: answers.map(|ans| ans.into_iter().map(|(c, f)| (c.name, f)).collect()),
        entry: catcher.map(|(n, _)| n.to_string()),
        interpreter: catcher.map(|(_, e)| e.spec.interpreter.display().to_string()),
        detail,
        millis,
        emulator_version: catcher.and_then(|(_, e)| {
            let path = &e.spec.interpreter;
            versions.of(path, &observe::identity_of(path).ok()?)
        }),
        pac: (a.name == "aarch64" && result == ProbeResult::Pass)
            .then(|| super::pac_cost::measure(timeout))
            .flatten(),
    }
}

impl ArchResult {
    /// An arch whose probe did not run, and why.
    fn untested(arch: &str, result: ProbeResult, detail: &str) -> ArchResult {
        ArchResult {
            arch: arch.into(),
            result,
            entry: None,
            interpreter: None,
            detail: Some(detail.into()),
            millis: None,
            emulator_version: None,
            syscalls: None,
            lacking: vec![],
            pac: None,
        }
    }
}

/// The setuid check, when aarch64 passed through an entry.
fn setuid_report(
    world: &crate::model::World,
    results: &[ArchResult],
    uid: u32,
    timeout: Duration,
) -> Option<SetuidReport> {
    let passed = results
        .iter()
        .find(|r| r.arch == setuid::ARCH && r.result == ProbeResult::Pass)?;
    let entry = passed.entry.clone()?;
    let c_flag = world
        .kernel
        .get(&entry)
        .is_some_and(|e| e.spec.flags.credentials);
    Some(SetuidReport {
        arch: setuid::ARCH,
        entry,
        c_flag,
        found: setuid::check(uid, timeout),
    })
}

/// Every enabled entry the probes above did not go through (arches
/// without a probe, custom entries, other tools' entries): listed as
/// `no-probe`, so that `qus test` accounts for every registered entry.
fn untested_entries(world: &crate::model::World, done: &[ArchResult]) -> Vec<ArchResult> {
    if !world.binfmt_live() {
        return vec![];
    }
    world
        .match_order
        .iter()
        .filter_map(|name| {
            let e = world.kernel.get(name)?;
            if !e.enabled
                || done
                    .iter()
                    .any(|r| r.entry.as_deref() == Some(name.as_str()))
            {
                return None;
            }
            let arch = world
                .handlers
                .iter()
                .find(|(_, hs)| hs.first() == Some(name))
                .map(|(a, _)| a.clone());
            Some(ArchResult {
                arch: arch.clone().unwrap_or_else(|| "-".into()),
                result: ProbeResult::NoProbe,
                entry: Some(name.clone()),
                interpreter: Some(e.spec.interpreter.display().to_string()),
                detail: Some(match arch {
                    Some(_) => "registered; qus ships no probe program for this arch".into(),
                    None => "registered; not a QEMU arch entry, nothing to probe".into(),
                }),
                millis: None,
                emulator_version: None,
                syscalls: None,
                lacking: vec![],
                pac: None,
            })
        })
        .collect()
}

fn render(r: &TestReport) -> String {
    let mut s = format!(
        "{:<13} {:<15} {:<18} {:>6}  DETAIL\n",
        "ARCH", "RESULT", "ENTRY", "MS"
    );
    for a in &r.results {
        let mut detail = match (&a.detail, &a.emulator_version) {
            (Some(d), _) => d.clone(),
            (None, Some(v)) => format!("QEMU {v}"),
            (None, None) => String::new(),
        };
        if !a.lacking.is_empty() {
            detail.push_str(&format!("; lacks {}", a.lacking.join(", ")));
        }
        if let Some(pac) = &a.pac {
            if pac.ratio > super::pac_cost::WORTH_SAYING {
                detail.push_str(&format!("; PAC costs {:.1}x", pac.ratio));
            } else {
                detail.push_str("; PAC costs nothing measurable");
            }
        }
        s.push_str(&format!(
            "{:<13} {:<15} {:<18} {:>6}  {}\n",
            a.arch,
            a.result.as_str(),
            a.entry.as_deref().unwrap_or("-"),
            a.millis
                .map(|m| m.to_string())
                .unwrap_or_else(|| "-".into()),
            clean(&detail)
        ));
    }
    let summary: Vec<String> = r.summary.iter().map(|(k, v)| format!("{v} {k}")).collect();
    s.push_str(&format!("\n{}\n", summary.join(", ")));
    s.push_str(&lacking_notes(&r.results));
    for a in &r.results {
        let advice = a
            .pac
            .as_ref()
            .and_then(|pac| super::pac_cost::advice(pac, a.emulator_version.as_deref()));
        if let Some(line) = advice {
            s.push_str(&format!("{line}\n"));
        }
    }
    if let Some(su) = &r.setuid {
        s.push_str(&match &su.found {
            Setuid::Works => format!(
                "setuid: works (a setuid-root {} program ran as root through {}, C flag)\n",
                su.arch, su.entry
            ),
            Setuid::NeedsC if su.c_flag => format!(
                "setuid: FAILS although {} has the C flag (a setuid-root {} program ran without \
                 its privileges)\n",
                su.entry, su.arch
            ),
            Setuid::NeedsC => format!(
                "setuid: needs the C flag ({} has none: setuid programs such as sudo run without \
                 their privileges under emulation; set flags = \"PFC\" if containers need them, \
                 see qus.d(5))\n",
                su.entry
            ),
            Setuid::NotChecked(why) => format!("setuid: not checked ({why})\n"),
        });
    }
    s
}

/// One line per system call some emulator lacks: which arches, and what
/// breaks without it.
fn lacking_notes(results: &[ArchResult]) -> String {
    let mut s = String::new();
    for call in syscalls::CALLS {
        let arches: Vec<&str> = results
            .iter()
            .filter(|r| r.lacking.contains(&call.name))
            .map(|r| r.arch.as_str())
            .collect();
        if !arches.is_empty() {
            s.push_str(&format!(
                "{}: ENOSYS under {}: {}\n",
                call.name,
                arches.join(", "),
                call.without
            ));
        }
    }
    s
}
