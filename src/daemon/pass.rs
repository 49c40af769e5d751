//! One daemon pass as a self-contained job: it owns copies of what it
//! needs, so it runs on a blocking thread while the event loop goes on.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::binfmt::KernelEntries;
use crate::engine::{self, Outcome};
use crate::model::NativeVerdicts;
use crate::observe::{Request, System};
use crate::plan::{Action, Mode, Target};
use crate::probe;

/// How long `daemon.verify` lets one probe run.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many verification probes run at once.
const VERIFY_PARALLEL: usize = 4;

/// A pass to run.
pub struct Job {
    pub number: u64,
    pub why: String,
    pub system: System,
    /// Native verdicts from an earlier pass, if any.
    pub native: Option<NativeVerdicts>,
    /// Entries to leave alone this time (emulator still being written).
    pub holds: BTreeSet<String>,
    /// Other tools' entries to put back first (flush guard).
    pub restore: KernelEntries,
    /// qusd's records from its last pass (see [`Request::remembered`]).
    pub remembered: Option<crate::model::OwnedEntries>,
    /// Takeovers that failed earlier (see [`Request::failed_takeovers`]).
    pub failed_takeovers: crate::model::FailedTakeovers,
}

/// How a pass ended, in what the loop keeps.
pub enum Ended {
    Done(Box<Finished>),
    Failed(String),
}

/// What a pass that ran leaves for the loop.
pub struct Finished {
    pub kernel_after: (bool, KernelEntries),
    /// The native verdicts, when they may be kept (not provisional).
    pub native: Option<NativeVerdicts>,
    pub status: String,
    /// The entries this pass wrote, each with what it wrote (to
    /// notice the same repair made again and again).
    pub repairs: Vec<(String, String)>,
    /// Other tools' entries as the pass left them (neither owned nor
    /// configured by qus): what the flush guard puts back.
    pub others: KernelEntries,
    /// Did qus own any entry after the pass?
    pub owns_any: bool,
    /// What qusd's memory takes in (see [`super::memory::Memory`]).
    pub left: super::memory::Left,
    /// Entries whose interpreter someone other than root could replace,
    /// with why (see [`crate::model::World::risky`]).
    pub risky: std::collections::BTreeMap<String, String>,
}

impl Job {
    pub fn run(self) -> Ended {
        let request = Request {
            native: self.native.clone(),
            restore: self.restore.clone(),
            holds: self.holds.clone(),
            remembered: self.remembered.clone(),
            failed_takeovers: self.failed_takeovers.clone(),
            ..Request::default()
        };
        let mode = Mode::Reconcile {
            takeover: self.system.config.takeover.value,
            scope: None,
            holds: self.holds.clone(),
        };
        match engine::run(&self.system, &request, mode) {
            Ok(pass) => {
                let mut status = pass.summary();
                if self.system.config.verify.value {
                    status.push_str(&verify(&pass));
                }
                tracing::info!(
                    "pass {} ({}): {} writes to binfmt_misc; {status}",
                    self.number,
                    self.why,
                    pass.applied.kernel_writes
                );
                Ended::Done(Box::new(Finished {
                    risky: pass.world.risky.clone(),
                    native: (!pass.world.native_provisional).then(|| pass.native().clone()),
                    repairs: repairs(&pass),
                    others: others(&pass, &self.restore),
                    owns_any: pass
                        .kernel_after
                        .1
                        .keys()
                        .any(|n| pass.owned_after.contains_key(n)),
                    left: super::memory::Left {
                        busy: pass.applied.busy.clone(),
                        owned_after: pass.owned_after.clone(),
                        state_refused: pass.state_refused.clone(),
                        registered: repairs(&pass).into_iter().map(|(n, _)| n).collect(),
                        failed_takeovers: pass.applied.failed_takeovers.clone(),
                    },
                    kernel_after: pass.kernel_after,
                    status,
                }))
            }
            Err(e) => {
                tracing::error!("pass {} ({}) failed: {e:#}", self.number, self.why);
                Ended::Failed(format!("error: {e:#}"))
            }
        }
    }
}

/// Entries in the kernel after the pass that qus neither owns nor names.
///
/// With the ones this pass put back after a flush: a second flush that
/// lands between putting them back and observing (`systemctl restart
/// systemd-binfmt` flushes twice) must find them remembered, or the next
/// pass would not know to put them back again.
fn others(pass: &Outcome, restored: &KernelEntries) -> KernelEntries {
    let mut others: KernelEntries = pass
        .kernel_after
        .1
        .iter()
        .filter(|(name, _)| !pass.plan.items.iter().any(|i| &i.name == *name))
        .map(|(n, e)| (n.clone(), e.clone()))
        .collect();
    for (name, entry) in restored {
        others.entry(name.clone()).or_insert_with(|| entry.clone());
    }
    others
}

/// The kernel writes a pass made, by entry, with a fingerprint of each.
fn repairs(pass: &Outcome) -> Vec<(String, String)> {
    pass.applied
        .done
        .iter()
        .filter_map(|a| match a {
            Action::Register(t) | Action::Replace { target: t, .. } => Some((
                t.name.clone(),
                format!(
                    "register {} {:?}",
                    t.spec.register_line(&t.name),
                    t.identity
                ),
            )),
            Action::Enable { name } => Some((name.clone(), "enable".into())),
            // The global switch counts as a repair too: a loop switching it
            // off is given up on like an entry someone keeps removing.
            Action::SwitchOn => Some((crate::plan::SWITCH_HOLD.into(), "switch on".into())),
            _ => None,
        })
        .collect()
}

/// `daemon.verify`: run the probe of every arch this pass registered or
/// replaced (a few at once), so a broken emulator is reported now, not at
/// the first failed build. Returns the words to add to the status line.
fn verify(pass: &Outcome) -> String {
    let targets: Vec<(&Target, &'static probe::Probe)> = pass
        .applied
        .done
        .iter()
        .filter_map(|action| match action {
            Action::Register(t) | Action::Replace { target: t, .. } => {
                let p = t.arch.as_deref().and_then(probe::find)?;
                Some((t, p))
            }
            _ => None,
        })
        .collect();
    if targets.is_empty() {
        return String::new();
    }
    let mut failed = Vec::new();
    for chunk in targets.chunks(VERIFY_PARALLEL) {
        let results: Vec<(String, Option<String>)> = std::thread::scope(|s| {
            let running: Vec<_> = chunk
                .iter()
                .map(|(t, p)| {
                    s.spawn(move || {
                        let failure = probe::run(p, VERIFY_TIMEOUT).failure();
                        if failure.is_none() {
                            tracing::info!("verified {}: the {} probe ran", t.name, p.arch);
                        }
                        (t.name.clone(), failure)
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| ("?".into(), Some("the probe thread panicked".into())))
                })
                .collect()
        });
        for (name, failure) in results {
            match failure {
                None => {}
                Some(why) => {
                    tracing::error!("verification of {name} failed: {why}");
                    failed.push(name);
                }
            }
        }
    }
    let mut words = format!("; verified {}", targets.len() - failed.len());
    if !failed.is_empty() {
        words.push_str(&format!(", verification FAILED: {}", failed.join(" ")));
    }
    words
}
