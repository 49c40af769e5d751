//! qusd: register at start, then watch and reconcile until stopped.
//!
//! One current-thread tokio runtime waits on inotify events, the debounce
//! deadline (armed only after an event), signals, the systemd watchdog
//! tick (only when systemd asks for one) and the pass that is running, if
//! any. Idle is idle.
//!
//! Each debounced batch of events runs the same lock → observe → plan →
//! apply pass as `qus register`, on a blocking thread: a pass may run
//! probe programs (native detection, `daemon.verify`) or wait for the
//! lock, and none of that may stop the loop. While it runs, watchdog pings
//! keep their period, SIGTERM/SIGINT stop qusd at once (killing the
//! probes it started), and new events and SIGHUP wait for the pass to end.
//!
//! qusd's own writes to binfmt_misc come back as inotify events; when
//! binfmt_misc is exactly as the last pass left it, those are recognised
//! and cost no pass, so qusd never loops.

mod events;
mod lifecycle;
mod memory;
mod notify;
mod pass;
mod rules;
mod watch;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use futures_util::StreamExt;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::binfmt::KernelEntries;
use crate::model::NativeVerdicts;
use crate::observe::{self, System};
use crate::setup::{print_error, CommonArgs};
use events::{Targets, Trigger};
use pass::{Ended, Job};
use rules::{RepairCounter, Settle};
use watch::WatchSet;

#[derive(Debug, Parser)]
#[command(
    name = "qusd",
    version,
    about = "Keep binfmt_misc registrations for QEMU emulators right: register, watch, repair",
    after_help = "Signals: SIGHUP reloads the configuration; SIGTERM/SIGINT stop.\n\
                  Exit status: 0 stopped cleanly, 1 error (e.g. bad configuration at start), 2 usage."
)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// An emulator file with no write for this long counts as complete.
const WRITE_QUIET: Duration = Duration::from_secs(5);

/// Entry point of the `qusd` binary.
pub fn main() -> ExitCode {
    let args = match DaemonArgs::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    crate::logging::init(args.common.log_level.as_deref().unwrap_or("info"), true);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // A pass still on its thread (its probes are killed; it may be waiting
    // for the lock) does not delay the exit: the process ends with main.
    match runtime.block_on(run(args.common)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error(&e);
            ExitCode::from(1)
        }
    }
}

/// The daemon's state between passes.
struct Daemon {
    common: CommonArgs,
    system: System,
    watch: WatchSet,
    /// binfmt_misc (global switch + entries) as the last pass left it.
    last_kernel: Option<(bool, KernelEntries)>,
    /// The error of the newest configuration, when it was rejected.
    config_error: Option<String>,
    /// The config directories that existed when the configuration in use
    /// was loaded: one that vanishes keeps that configuration in force.
    config_dirs_seen: Vec<std::path::PathBuf>,
    passes: u64,
    status: String,
    /// Native verdicts from the first pass: the host does not change.
    native: Option<NativeVerdicts>,
    /// The fight breaker: repairs in a row, and the entries given up on.
    repairs: RepairCounter,
    /// Other tools' entries as the last pass left them, and whether qus
    /// owned any then (for the flush guard).
    others_last: (KernelEntries, bool),
    /// Entries with an interpreter others could replace, as last said.
    risky_seen: std::collections::BTreeMap<String, String>,
    /// When to look again, qusd's own records, failed takeovers.
    memory: memory::Memory,
    /// Held for qusd's whole life: one qusd per state dir.
    _instance: Option<crate::state::Claim>,
}

/// Signals qusd handles.
struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

/// The pass running now, if any, and what to tell systemd when it ends.
type Running = Option<(oneshot::Receiver<Ended>, Announce)>;

async fn run(common: CommonArgs) -> Result<()> {
    // Handlers first: a SIGHUP that arrives right after READY=1 (systemd's
    // `reload` may) must reload, not kill us with its default action.
    let mut signals = Signals {
        hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
        term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
        int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
    };
    let inotify = inotify::Inotify::init().context("inotify_init")?;
    let mut events = inotify
        .into_event_stream(vec![0u8; 64 * 1024])
        .context("inotify event stream")?;
    let mut d = Daemon::new(common, WatchSet::new(events.watches()))?;
    let watchdog = sd_notify::watchdog_enabled();
    let mut watchdog_tick =
        tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |usec| usec / 2));
    watchdog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let Some(w) = watchdog {
        tracing::info!("systemd watchdog every {:?}; pinging at half of it", w);
    }
    // Watch before the first pass so nothing that happens during it is missed.
    d.arm();
    let mut running: Running = Some((d.start("start".into()), Announce::Ready));
    let mut settle = Settle::default();
    let far = || Instant::now() + Duration::from_secs(86400);
    // Whether the "quiet" line was logged since the last thing happened:
    // tests wait for it to know every event so far has been handled.
    let mut said_quiet = false;
    loop {
        if running.is_none() && settle.deadline().is_none() && !said_quiet {
            tracing::debug!("quiet: every event so far is handled");
            said_quiet = true;
        }
        let wake = match (&running, settle.deadline()) {
            (None, Some(at)) => Some(Instant::from_std(at)),
            _ => None,
        };
        let expiry = d
            .watch
            .next_expiry(WRITE_QUIET)
            .map(|t| Instant::from_std(t).max(Instant::now()));
        tokio::select! {
            event = events.next() => {
                said_quiet = false;
                d.on_event(event, &mut settle)?;
            }
            done = async { (&mut running.as_mut().expect("guarded").0).await }, if running.is_some() => {
                said_quiet = false;
                let announce = running.take().map_or(Announce::Status, |(_, a)| a);
                running = d.on_pass_end(done, announce, &mut settle);
            }
            _ = tokio::time::sleep_until(wake.unwrap_or_else(far)), if wake.is_some() => {
                let t = settle.take();
                running = d.handle(t).map(|job| (job, Announce::Status));
            }
            _ = tokio::time::sleep_until(expiry.unwrap_or_else(far)), if expiry.is_some() => {
                let now = std::time::Instant::now();
                if d.watch.expire(now, WRITE_QUIET) {
                    settle.add(Trigger { files: true, ..Trigger::default() }, Duration::ZERO, now);
                }
            }
            _ = signals.hup.recv() => {
                if running.is_some() {
                    tracing::info!("SIGHUP: reloading once the running pass ends");
                    settle.reload = true;
                } else {
                    running = Some((d.reload(), Announce::Ready));
                }
            }
            _ = signals.term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = signals.int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = watchdog_tick.tick(), if watchdog.is_some() => notify::watchdog(),
        }
    }
    d.stop(running.is_some());
    Ok(())
}

/// What to tell systemd when a pass ends.
#[derive(Debug, Clone, Copy)]
enum Announce {
    /// `READY=1` (after the first pass, and after a reload).
    Ready,
    /// `STATUS=` only.
    Status,
}

impl Daemon {
    /// Load the configuration, check qusd may run here, claim the state
    /// dir. Bad configuration at start: exit 1 with file:line (systemd
    /// shows it); not allowed to change anything here: exit at once,
    /// saying why; one qusd per state dir: a second one exits at once,
    /// naming the first.
    fn new(common: CommonArgs, watch: WatchSet) -> Result<Daemon> {
        common.namespace_defaults_exist()?;
        let config = common.load_config()?;
        let system = common.system_with(config);
        crate::engine::may_change(&system)?;
        let instance = system.state.claim_daemon()?;
        let mut d = Daemon {
            watch,
            common,
            system,
            last_kernel: None,
            config_error: None,
            config_dirs_seen: Vec::new(),
            passes: 0,
            status: String::new(),
            native: None,
            repairs: RepairCounter::default(),
            memory: memory::Memory::default(),
            others_last: (KernelEntries::new(), false),
            risky_seen: Default::default(),
            _instance: instance,
        };
        d.config_dirs_seen = d.existing_config_dirs();
        Ok(d)
    }

    fn debounce(&self) -> Duration {
        Duration::from_millis(self.system.config.debounce_ms.value)
    }

    /// One inotify event (or a read error, which costs a full rescan).
    fn on_event(
        &mut self,
        event: Option<std::io::Result<inotify::Event<OsString>>>,
        settle: &mut Settle,
    ) -> Result<()> {
        let now = std::time::Instant::now();
        match event {
            Some(Ok(event)) => {
                tracing::trace!("inotify event {:?} {:?}", event.mask, event.name);
                let t = self.watch.classify(&event);
                if t.any() {
                    settle.add(t, self.debounce(), now);
                }
            }
            Some(Err(e)) => {
                tracing::error!("reading inotify events: {e}; rescanning");
                let t = Trigger {
                    overflow: true,
                    rearm: true,
                    ..Trigger::default()
                };
                settle.add(t, self.debounce(), now);
            }
            None => anyhow::bail!("the inotify event stream ended"),
        }
        Ok(())
    }

    /// A pass ended: take in what it left, schedule a retry after a
    /// failure, and run the reload a SIGHUP asked for meanwhile.
    fn on_pass_end(
        &mut self,
        done: Result<Ended, oneshot::error::RecvError>,
        announce: Announce,
        settle: &mut Settle,
    ) -> Running {
        if let Some(delay) = self.finish(done, announce) {
            if self.memory.after_failure() {
                tracing::info!("retrying in {delay:?}");
            } else {
                // A busy interpreter or a refused state dir: said once
                // when it began, not on every look.
                tracing::debug!("looking again in {delay:?}");
            }
            settle.retry(delay, std::time::Instant::now());
        } else if !self.system.binfmt.is_mounted() {
            // Unmounted after the pass mounted it and before the watch was
            // armed: the watch landed on the directory underneath, and no
            // event would ever come. Mount and fill it again now.
            tracing::warn!(
                "binfmt_misc at {} is not mounted (unmounted as the pass ended); another pass",
                self.system.binfmt.root().display()
            );
            settle.retry(Duration::ZERO, std::time::Instant::now());
        } else if self.changed_while_unwatched() {
            tracing::info!("binfmt_misc changed during the pass; another pass");
            settle.retry(Duration::ZERO, std::time::Instant::now());
        }
        if std::mem::take(&mut settle.reload) {
            return Some((self.reload(), Announce::Ready));
        }
        None
    }

    /// Does binfmt_misc differ from what the pass left? A change made
    /// while the pass ran is normally an event handled next; but a pass
    /// that mounted binfmt_misc watched the new mount only from its end,
    /// and an entry removed in between would never be repaired.
    fn changed_while_unwatched(&self) -> bool {
        match (self.kernel_now(), self.last_kernel.as_ref()) {
            (Some(now), Some(last)) => {
                let kernel = Trigger {
                    kernel: true,
                    ..Trigger::default()
                };
                !rules::is_echo(&kernel, Some(&now), Some(last), self.repairs.given_up())
            }
            _ => false,
        }
    }

    /// What to watch for the current configuration. A symlinked emulator
    /// is upgraded where it points, and any link on the way may be
    /// re-pointed: every hop is looked up here and watched.
    fn targets(&self) -> Targets {
        let config = &self.system.config;
        let cache = crate::safety::DirCache::default();
        let interpreters: Vec<rules::InterpreterPaths> =
            observe::interpreters(config, &self.system.versions)
                .into_iter()
                .map(|(_, path)| {
                    let hops = match crate::safety::resolve(&path, &cache) {
                        Ok(r) => r.links.into_iter().chain([r.file]).collect(),
                        Err(_) => std::fs::canonicalize(&path).into_iter().collect(),
                    };
                    rules::InterpreterPaths { path, hops }
                })
                .collect();
        rules::watch_targets(config, &interpreters, self.common.config_dirs())
    }

    fn arm(&mut self) {
        let targets = self.targets();
        self.watch.arm(&targets);
    }

    /// Entries left alone this pass: those whose emulator file is still
    /// being written, and those qusd gave up fighting over.
    fn holds(&self) -> std::collections::BTreeSet<String> {
        let interpreters = if self.watch.any_writing() {
            observe::interpreters(&self.system.config, &self.system.versions)
        } else {
            Vec::new()
        };
        rules::holds(self.repairs.given_up(), &interpreters, |p| {
            self.watch.writing(p)
        })
    }

    /// `guard.others`: other tools' entries to put back, when binfmt_misc
    /// was flushed (see [`rules::flushed`]).
    fn flushed_others(&mut self) -> KernelEntries {
        if !self.system.config.guard_others.value {
            self.watch.take_vanished();
            return KernelEntries::new();
        }
        // Unreadable now (unmounted, mid-flush): keep what vanished for
        // the pass that can read it, or a flush seen here would be lost.
        let Some((_, now)) = self.kernel_now() else {
            return KernelEntries::new();
        };
        let vanished = self.watch.take_vanished();
        let (others, owned_any) = &self.others_last;
        if !rules::flushed(others, *owned_any, &now, &vanished) {
            return KernelEntries::new();
        }
        tracing::warn!(
            "binfmt_misc was flushed: putting back {} entries of other tools",
            others.len()
        );
        others.clone()
    }

    /// A flush of other tools' entries not put back yet (its removals were
    /// read after the pass that followed it began): never taken for qusd's
    /// own echo.
    fn flush_pending(&self, now: Option<&(bool, KernelEntries)>) -> bool {
        let (others, owned_any) = &self.others_last;
        self.system.config.guard_others.value
            && now.is_some_and(|(_, now)| {
                rules::flushed(others, *owned_any, now, self.watch.vanished())
            })
    }

    fn existing_config_dirs(&self) -> Vec<std::path::PathBuf> {
        self.common
            .config_dirs()
            .into_iter()
            .filter(|d| d.is_dir())
            .collect()
    }

    /// Load the configuration again; on error keep the previous one, and
    /// keep it while a config directory is gone (see
    /// [`rules::keep_config`]).
    fn reload_config(&mut self, asked: bool) {
        let now = self.existing_config_dirs();
        if let Some(why) = rules::keep_config(&self.config_dirs_seen, &now, asked) {
            tracing::warn!("{why}");
            self.config_error = Some(why);
            return;
        }
        match self.common.load_config() {
            Ok(config) => {
                if self.config_error.take().is_some() {
                    tracing::info!("configuration is valid again");
                }
                self.config_dirs_seen = now;
                if asked || config != self.system.config {
                    self.repairs.clear();
                    self.memory.new_configuration();
                }
                if config != self.system.config {
                    tracing::info!("configuration reloaded from {} file(s)", config.files.len());
                    self.system = self.common.system_with(config);
                }
            }
            Err(e) => {
                tracing::error!("configuration rejected, keeping the previous one: {e:#}");
                self.config_error = Some(format!("{e:#}"));
            }
        }
    }

    /// SIGHUP: reload, then a pass; READY=1 follows when it ends.
    fn reload(&mut self) -> oneshot::Receiver<Ended> {
        notify::reloading();
        tracing::info!("SIGHUP: reloading configuration");
        self.arm();
        self.reload_config(true);
        self.arm();
        self.start("SIGHUP".into())
    }

    fn kernel_now(&self) -> Option<(bool, KernelEntries)> {
        let binfmt = &self.system.binfmt;
        if !binfmt.is_mounted() {
            return None;
        }
        let enabled = binfmt.enabled().ok()?;
        let entries = binfmt.entries().ok()?.entries;
        Some((enabled, entries))
    }

    /// Act on a settled batch of events: a pass, unless the batch is only
    /// the echo of qusd's own writes (see [`rules::is_echo`]).
    fn handle(&mut self, t: Trigger) -> Option<oneshot::Receiver<Ended>> {
        // Watch first, then read: a drop-in written after the config dir
        // (re)appeared but before its watch existed would be lost.
        if t.rearm || t.config || t.overflow {
            self.arm();
        }
        if t.config || t.overflow {
            self.reload_config(false);
            self.arm();
        }
        let now = if t.kernel_only() {
            self.kernel_now()
        } else {
            None
        };
        if rules::is_echo(
            &t,
            now.as_ref(),
            self.last_kernel.as_ref(),
            self.repairs.given_up(),
        ) && !self.flush_pending(now.as_ref())
        {
            tracing::debug!(
                "binfmt_misc is as the last pass left it (our own writes); nothing to do"
            );
            return None;
        }
        Some(self.start(t.reasons()))
    }

    /// Start one pass on a thread of its own (it ends with the pass, so an
    /// idle qusd has no thread left to wake up).
    fn start(&mut self, why: String) -> oneshot::Receiver<Ended> {
        self.passes += 1;
        let holds = self.holds();
        let writing: Vec<&str> = holds
            .iter()
            .filter(|h| !self.repairs.given_up().contains_key(*h))
            .map(String::as_str)
            .collect();
        if !writing.is_empty() {
            tracing::info!(
                "waiting for {} to be written completely",
                writing.join(", ")
            );
        }
        let job = Job {
            number: self.passes,
            why,
            system: self.system.clone(),
            native: self.native.clone(),
            holds,
            restore: self.flushed_others(),
            remembered: self.memory.remembered.clone(),
            failed_takeovers: self.memory.failed_takeovers.clone(),
        };
        let (tx, rx) = oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("qusd-pass".into())
            .spawn(move || {
                let _ = tx.send(job.run());
            });
        if let Err(e) = spawned {
            // The receiver then reports the pass as failed.
            tracing::error!("cannot start a thread for the pass: {e}");
        }
        rx
    }

    /// A pass ended: remember what it left, re-arm, publish, tell systemd.
    /// Returns when to retry, if the pass failed (see [`rules::backoff`])
    /// or left an interpreter busy (see [`rules::busy_retry`]).
    fn finish(
        &mut self,
        done: Result<Ended, oneshot::error::RecvError>,
        announce: Announce,
    ) -> Option<Duration> {
        if !matches!(done, Ok(Ended::Done(_))) {
            self.memory.pass_failed();
        }
        match done {
            Ok(Ended::Done(finished)) => {
                let pass::Finished {
                    kernel_after,
                    native,
                    status,
                    repairs,
                    others,
                    owns_any,
                    left,
                    risky,
                } = *finished;
                // Said once when it appears (and again only after it went).
                for (name, why) in &risky {
                    if !self.risky_seen.contains_key(name) {
                        tracing::warn!(
                            entry = name.as_str(),
                            "{name}: its interpreter could be replaced by someone other than \
                             root: {why}"
                        );
                    }
                }
                self.risky_seen = risky;
                self.memory.take_in(left);
                let others =
                    rules::others_to_remember(&self.others_last.0, others, self.watch.vanished());
                self.others_last = (others, owns_any);
                self.last_kernel = Some(kernel_after);
                if let Some(native) = native {
                    self.native.get_or_insert(native);
                }
                self.status = status;
                for name in self.repairs.count(&repairs, std::time::Instant::now()) {
                    tracing::error!("{}", self.repairs.given_up()[&name]);
                }
            }
            Ok(Ended::Failed(status)) => {
                self.last_kernel = None;
                self.status = status;
            }
            Err(_) => {
                self.last_kernel = None;
                self.status = "error: the pass ended abnormally (see the log)".to_string();
                tracing::error!("{}", self.status);
            }
        }
        if let Some(e) = &self.config_error {
            self.status.push_str(&format!(
                "; config error (previous configuration kept): {e}"
            ));
        }
        for why in self.repairs.given_up().values() {
            self.status.push_str(&format!("; {why}"));
        }
        self.arm();
        if self.last_kernel.is_some() && !self.system.binfmt.is_mounted() {
            // What the pass registered went with the mount: say so, never
            // "registered" (the next pass mounts it again).
            self.last_kernel = None;
            self.status = format!(
                "binfmt_misc at {} was unmounted as the pass ended; mounting it again",
                self.system.binfmt.root().display()
            );
        }
        self.publish();
        self.announce(announce);
        self.memory.next_try()
    }
}
