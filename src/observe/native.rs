//! Which arches the host runs itself. Cheapest first: the kernel's own
//! arch is native by definition, the kernel is asked directly where it
//! can be (tens of µs), and only then a tiny probe program runs, started
//! here and waited for after observe has looked for the emulators.

use std::time::Duration;

use super::System;
use crate::arch::{self, Arch};
use crate::binfmt::KernelEntries;
use crate::model::{Host, Native, NativeVerdicts, OwnedEntries};
use crate::observe::loader_check::{self, Asking, EntriesTake, LoaderVerdict};
use crate::probe;

/// How long a native probe may take: natively it takes well under a
/// millisecond, so this only bounds a host that is badly stuck.
const NATIVE_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Arches the kernel loads exactly as another one: i486 programs differ
/// from i386 ones only in `e_machine`, which the x86 loader accepts either
/// way, so one probe run answers for both.
const NATIVE_SAME_AS: &[(&str, &str)] = &[("i486", "i386")];

/// What qus knows of the binfmt_misc instance the kernel consults when
/// qus itself execs something.
#[derive(Debug, Clone, Copy)]
pub struct BinfmtView {
    /// Mounted and enabled: its entries take programs.
    pub live: bool,
    /// The entries listed are those the kernel consults for this process.
    pub listed: bool,
}

/// Native verdicts on their way: those known, and the probes still
/// running for the rest.
pub struct Deciding {
    pub verdicts: NativeVerdicts,
    /// Another tool's entry kept a probe from telling: decided by the
    /// family rule, for now only.
    provisional: bool,
    /// Arches whose verdict waits for a running probe.
    pub undecided: Vec<&'static str>,
    running: Vec<(&'static Arch, Result<probe::Running, probe::RunResult>)>,
    /// The state-dir cache key to keep the verdicts under, once decided
    /// (only verdicts that took a child or a probe are worth keeping).
    cache_key: Option<String>,
    /// Decided in this pass (not taken from the cache): to be completed
    /// and logged.
    fresh: bool,
}

/// One arch's verdict, as far as it can be told without waiting.
enum Step {
    Known(Native),
    /// By the family rule, because another tool's entry kept the kernel
    /// from telling: holds for now only.
    Provisional,
    /// Decided from the arch it loads as, once that is known.
    LikeAnother,
    /// Its probe must run.
    Probe(&'static probe::Probe),
}

impl Deciding {
    pub fn known(verdicts: NativeVerdicts) -> Deciding {
        Deciding {
            verdicts,
            provisional: false,
            undecided: vec![],
            running: vec![],
            cache_key: None,
            fresh: false,
        }
    }

    /// Wait for the probes and decide the rest: the verdicts, whether
    /// they hold for now only, and the cache key to keep them under when
    /// they were decided now and may be kept.
    pub fn finish(mut self, host: &Host) -> (NativeVerdicts, bool, Option<String>) {
        if !self.fresh {
            return (self.verdicts, self.provisional, None);
        }
        for (a, running) in std::mem::take(&mut self.running) {
            let result = match running {
                Ok(running) => running.finish(NATIVE_PROBE_TIMEOUT),
                Err(ended) => ended,
            };
            let verdict = probe_verdict(host, a, result);
            self.verdicts.insert(a.name.to_string(), verdict);
        }
        for (this, like) in NATIVE_SAME_AS {
            let Some(a) = arch::find(this).filter(|a| self.undecided.contains(&a.name)) else {
                continue;
            };
            let verdict = match self.verdicts.get(*like) {
                Some(Native::Yes(_)) => {
                    Native::Yes(format!("loaded like {like}, which runs natively"))
                }
                Some(Native::No(why)) => Native::No(format!("loaded like {like}: {why}")),
                None => family_rule(host, a),
            };
            self.verdicts.insert(a.name.to_string(), verdict);
        }
        for (arch, v) in &self.verdicts {
            match v {
                Native::Yes(why) => tracing::debug!("native {arch}: {why}"),
                Native::No(why) => tracing::info!("{arch} is not native here: {why}"),
            }
        }
        let key = self.cache_key.filter(|_| !self.provisional);
        (self.verdicts, self.provisional, key)
    }
}

/// Native verdicts, cheapest first. Where qus can ask the kernel itself
/// (the usual case: tens of µs) that is cheaper than reading a cache, so
/// nothing is read or kept. Verdicts that take a child or a probe hold for
/// one boot of one kernel, so they are cached in the state dir under the
/// boot id and the host's machine name; except when another tool's entry
/// kept a probe from telling (then the family rule decided, for now only).
pub fn start(
    system: &System,
    kernel: &KernelEntries,
    owned: &OwnedEntries,
    binfmt: BinfmtView,
) -> Deciding {
    if let Some(here) = verdicts(&system.host, kernel, owned, binfmt, Asking::HereOnly) {
        return here;
    }
    let boot_id = crate::fsutil::read_generated(&system.roots.boot_id).unwrap_or_default();
    let key = format!("{} {}", boot_id.trim(), system.host.machine);
    if let Some(cached) = system.state.load_native(&key) {
        return Deciding::known(cached);
    }
    let Some(mut deciding) = verdicts(&system.host, kernel, owned, binfmt, Asking::HereOrChild)
    else {
        unreachable!("asking in a child always decides or starts a probe")
    };
    deciding.cache_key = Some(key);
    deciding
}

/// Native verdicts for the arches of the host's family (as configured or
/// overridden) and of the running kernel's own family. Other arches are
/// foreign without asking. The probes that must run are only started
/// here (each a fork + exec of a tiny program). With
/// [`Asking::HereOnly`]: `None` as soon as an arch would need a child or
/// a probe.
fn verdicts(
    host: &Host,
    kernel: &KernelEntries,
    owned: &OwnedEntries,
    binfmt: BinfmtView,
    asking: Asking,
) -> Option<Deciding> {
    // Would an entry take a program starting with these bytes? Only
    // answerable from a listing the kernel really consults.
    let takes = |h: &[u8]| {
        binfmt.live
            && kernel
                .values()
                .any(|e| e.enabled && e.spec.matcher.catches(h))
    };
    let entries_take: Option<EntriesTake> = binfmt.listed.then_some(&takes);
    let kernel_machine = arch::kernel_machine();
    let real_family = arch::host_family(&kernel_machine);
    let own_arch = arch::find(&kernel_machine).map(|a| a.name);
    let mut deciding = Deciding {
        fresh: true,
        ..Deciding::known(NativeVerdicts::new())
    };
    let relevant = arch::ARCHES
        .iter()
        .filter(|a| a.family == host.family || a.family == real_family);
    for a in relevant {
        let step = if Some(a.name) == own_arch && a.family == host.family {
            Step::Known(Native::Yes(format!(
                "the kernel's own arch ({kernel_machine})"
            )))
        } else if NATIVE_SAME_AS.iter().any(|(this, _)| *this == a.name) {
            Step::LikeAnother
        } else if let Some(p) = probe::find(a.name) {
            step_by_kernel(a, p, kernel, owned, binfmt.live, entries_take, asking)?
        } else {
            Step::Known(family_rule(host, a))
        };
        match step {
            Step::Known(verdict) => {
                deciding.verdicts.insert(a.name.to_string(), verdict);
            }
            Step::Provisional => {
                deciding.provisional = true;
                deciding
                    .verdicts
                    .insert(a.name.to_string(), family_rule(host, a));
            }
            Step::LikeAnother => deciding.undecided.push(a.name),
            Step::Probe(p) => {
                // Started, not waited for: it runs while the caller looks
                // for emulators. (Not on a thread: under load, creating
                // one cost more than the overlap bought.)
                deciding.undecided.push(a.name);
                deciding.running.push((a, probe::start(p)));
            }
        }
    }
    Some(deciding)
}

/// One arch with a probe: who catches the probe now, else what the
/// kernel's loader says. `None` when asking here only and the kernel
/// cannot tell from here.
fn step_by_kernel(
    a: &Arch,
    p: &'static probe::Probe,
    kernel: &KernelEntries,
    owned: &OwnedEntries,
    binfmt_live: bool,
    entries_take: Option<EntriesTake>,
    asking: Asking,
) -> Option<Step> {
    let catcher = kernel
        .iter()
        .find(|(_, e)| binfmt_live && e.enabled && e.spec.matcher.catches(p.program));
    let step = match catcher {
        Some((name, _)) if owned.contains_key(name) => Step::Known(Native::No(format!(
            "{name}, registered by qus, runs it: the host could not"
        ))),
        Some(_) => Step::Provisional,
        None => match loader_check::check(p, entries_take, asking)? {
            LoaderVerdict::Loads => Step::Known(Native::Yes(format!(
                "the kernel loads {} programs itself",
                a.name
            ))),
            LoaderVerdict::Refuses => Step::Known(cannot_run(a)),
            LoaderVerdict::Caught => Step::Provisional,
            LoaderVerdict::Unknown(_) if asking == Asking::HereOnly => return None,
            LoaderVerdict::Unknown(why) => {
                tracing::debug!(
                    "cannot ask the kernel about {}: {why}; running its probe",
                    a.name
                );
                Step::Probe(p)
            }
        },
    };
    Some(step)
}

/// What a finished probe run says.
fn probe_verdict(host: &Host, a: &Arch, result: probe::RunResult) -> Native {
    match result {
        probe::RunResult::Pass => Native::Yes(format!("the {} probe ran natively", a.name)),
        probe::RunResult::ExecFormatError => cannot_run(a),
        // Only the kernel's refusal proves the host cannot run it; a crash
        // may be our own sandbox (a seccomp filter of a hardened service),
        // so the family rule decides.
        probe::RunResult::Fail(why) => {
            tracing::warn!(
                "the {} probe failed natively ({why}); deciding by the family rule",
                a.name
            );
            family_rule(host, a)
        }
    }
}

fn cannot_run(a: &Arch) -> Native {
    Native::No(format!(
        "the host cannot run {} binaries (exec format error)",
        a.name
    ))
}

/// The `qemu-binfmt-conf.sh` rule: the host's family is native.
fn family_rule(host: &Host, a: &Arch) -> Native {
    if a.family == host.family {
        Native::Yes(format!(
            "host {} runs {} natively (family rule)",
            host.machine, a.name
        ))
    } else {
        Native::No(format!("not of the {} family", host.family))
    }
}
