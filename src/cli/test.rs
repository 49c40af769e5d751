//! `qus test [ARCH…] [--json]`: prove each emulator runs a real foreign
//! program, by executing the arch's probe through the kernel.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::report::clean;
use super::{arch_names, CommonArgs};
use crate::model::Native;
use crate::observe::{self, Request};
use crate::{arch, probe};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Arches to test (default: every arch the kernel can run now,
    /// through an entry or natively).
    #[arg(value_name = "ARCH")]
    pub arches: Vec<String>,
    /// One JSON object (schema in the README) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Seconds before a probe that has not finished counts as hung.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
}

/// The verdict on one arch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
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

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NotRegistered => "not-registered",
            Verdict::Native => "native",
            Verdict::NoProbe => "no-probe",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ArchResult {
    pub arch: String,
    pub result: Verdict,
    /// The binfmt_misc entry that ran it, if any.
    pub entry: Option<String>,
    pub interpreter: Option<String>,
    pub detail: Option<String>,
    pub millis: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub version: u32,
    pub binfmt_misc: String,
    pub results: Vec<ArchResult>,
    pub summary: std::collections::BTreeMap<&'static str, usize>,
}

pub fn run(common: &CommonArgs, args: &TestArgs) -> Result<ExitCode> {
    let arches = arch_names(&args.arches)?;
    let system = common.system()?;
    let world = observe::observe(&system, &Request::default())?;
    let enabled = world.binfmt_live();
    let timeout = Duration::from_secs(args.timeout.max(1));
    let named = !arches.is_empty();

    let mut results = vec![];
    for a in arch::ARCHES {
        if named && !arches.iter().any(|n| n == a.name) {
            continue;
        }
        let Some(probe) = probe::find(a.name) else {
            if named {
                results.push(ArchResult {
                    arch: a.name.into(),
                    result: Verdict::NoProbe,
                    entry: None,
                    interpreter: None,
                    detail: Some("qus ships no probe program for this arch".into()),
                    millis: None,
                });
            }
            continue;
        };
        // The entry the kernel itself would pick: the first in match order.
        let catcher = world.catcher(probe.program);
        let is_native = matches!(world.native.get(a.name), Some(Native::Yes(_)));
        if catcher.is_none() && !is_native {
            if named {
                results.push(ArchResult {
                    arch: a.name.into(),
                    result: Verdict::NotRegistered,
                    entry: None,
                    interpreter: None,
                    detail: Some(if enabled {
                        "no enabled binfmt_misc entry matches its binaries".into()
                    } else {
                        "binfmt_misc is not mounted or is disabled".into()
                    }),
                    millis: None,
                });
            }
            continue;
        }
        let start = Instant::now();
        let outcome = probe::run(probe, timeout);
        let millis = Some(start.elapsed().as_millis() as u64);
        let detail = outcome.failure();
        let result = match (&detail, catcher) {
            (Some(_), _) => Verdict::Fail,
            (None, None) => Verdict::Native,
            (None, Some(_)) => Verdict::Pass,
        };
        results.push(ArchResult {
            arch: a.name.into(),
            result,
            entry: catcher.map(|(n, _)| n.to_string()),
            interpreter: catcher.map(|(_, e)| e.spec.interpreter.display().to_string()),
            detail,
            millis,
        });
    }
    let mut summary = std::collections::BTreeMap::new();
    for r in &results {
        *summary.entry(r.result.as_str()).or_insert(0) += 1;
    }
    let failed = results
        .iter()
        .any(|r| r.result == Verdict::Fail || (named && r.result == Verdict::NotRegistered));
    let report = Report {
        version: 1,
        binfmt_misc: system.binfmt.root().display().to_string(),
        results,
        summary,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn render(r: &Report) -> String {
    let mut s = format!(
        "{:<13} {:<15} {:<18} {:>6}  DETAIL\n",
        "ARCH", "RESULT", "ENTRY", "MS"
    );
    for a in &r.results {
        s.push_str(&format!(
            "{:<13} {:<15} {:<18} {:>6}  {}\n",
            a.arch,
            a.result.as_str(),
            a.entry.as_deref().unwrap_or("-"),
            a.millis
                .map(|m| m.to_string())
                .unwrap_or_else(|| "-".into()),
            clean(a.detail.as_deref().unwrap_or(""))
        ));
    }
    let summary: Vec<String> = r.summary.iter().map(|(k, v)| format!("{v} {k}")).collect();
    s.push_str(&format!("\n{}\n", summary.join(", ")));
    s
}
