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

mod notify;
mod pass;
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
use crate::engine;
use crate::model::NativeVerdicts;
use crate::observe::{self, System};
use crate::setup::{print_error, CommonArgs};
use crate::state::DaemonStatus;
use pass::{Job, Outcome};
use watch::{Targets, Trigger, WatchSet};

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

/// After this many identical repairs of one entry in a row, each within
/// [`FIGHT_WINDOW`] of the one before, someone else keeps undoing them
/// (another registrar, a second qusd with another configuration): qusd
/// stops touching that entry instead of fighting. Repairs further apart
/// (an administrator restarting systemd-binfmt now and then) are not a
/// fight and never count up.
const GIVE_UP_AFTER: u32 = 5;
const FIGHT_WINDOW: Duration = Duration::from_secs(5);

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
    /// Per entry: the last repair and how many times in a row it was made.
    repeats: std::collections::BTreeMap<String, (String, u32, Instant)>,
    /// Other tools' entries as the last pass left them, and whether qus
    /// owned any then (for the flush guard).
    others_last: (KernelEntries, bool),
    /// How long to wait before retrying after failed passes in a row.
    backoff: Option<Duration>,
    /// Entries qusd stopped repairing (until the configuration changes or
    /// SIGHUP), with why.
    given_up: std::collections::BTreeMap<String, String>,
    /// Held for qusd's whole life: one qusd per state dir.
    _instance: Option<std::fs::File>,
}

/// Signals qusd handles.
struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

/// How long a burst of complete-file or config events must be quiet
/// before a pass: long enough to collapse `dpkg` unpacking 35 emulators or
/// an editor's write + rename into few passes, short enough that one
/// emulator appearing is live within milliseconds.
const QUIET: Duration = Duration::from_millis(3);

/// Why the loop wakes up.
#[derive(Debug, Default)]
struct Pending {
    trigger: Trigger,
    /// When the first event of this batch arrived (the batch waits at most
    /// `daemon.debounce_ms` after it, however many events follow).
    since: Option<Instant>,
    /// When to act, if anything is pending.
    deadline: Option<Instant>,
    /// A SIGHUP arrived while a pass ran.
    reload: bool,
}

impl Pending {
    /// Event-aware settling. binfmt_misc events (an entry removed or
    /// disabled, possibly qusd's own echo) act at once: a repair is
    /// urgent and an echo costs nothing. File and config events count only
    /// once a file is complete (the watch set holds back files still open
    /// for writing) and then wait for a short quiet window, so a burst
    /// becomes one pass; `max_wait` (`daemon.debounce_ms`) bounds how long
    /// a stream of events can postpone it.
    fn add(&mut self, t: Trigger, max_wait: Duration) {
        let now = Instant::now();
        let urgent = t.kernel && !(t.files || t.config || t.rearm || t.overflow);
        self.trigger.merge(t);
        let since = *self.since.get_or_insert(now);
        let quiet = if urgent {
            Duration::ZERO
        } else {
            QUIET.min(max_wait)
        };
        let at = (now + quiet).min(since + max_wait);
        self.deadline = Some(match self.deadline {
            // An earlier deadline set by an urgent event stays.
            Some(d) if d <= now => d,
            _ => at,
        });
    }

    /// Run a pass again after `delay` (a failed pass, e.g. the lock held
    /// by a long `qus` run), unless events bring one sooner.
    fn retry(&mut self, delay: Duration) {
        self.trigger.merge(Trigger {
            files: true,
            ..Trigger::default()
        });
        let at = Instant::now() + delay;
        self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
    }

    fn take(&mut self) -> Trigger {
        self.since = None;
        self.deadline = None;
        std::mem::take(&mut self.trigger)
    }
}

async fn run(common: CommonArgs) -> Result<()> {
    // Handlers first: a SIGHUP that arrives right after READY=1 (systemd's
    // `reload` may) must reload, not kill us with its default action.
    let mut signals = Signals {
        hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
        term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
        int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
    };
    // Bad configuration at start: exit 1 with file:line (systemd shows it).
    let config = common.load_config()?;
    let system = common.system_with(config);
    // Not allowed to change anything here: exit at once, saying why.
    crate::engine::may_change(&system)?;
    // One qusd per state dir: a second one exits at once, naming the first.
    let instance = system.state.claim_daemon()?;
    let inotify = inotify::Inotify::init().context("inotify_init")?;
    let mut events = inotify
        .into_event_stream(vec![0u8; 64 * 1024])
        .context("inotify event stream")?;
    let mut d = Daemon {
        watch: WatchSet::new(events.watches()),
        common,
        system,
        last_kernel: None,
        config_error: None,
        config_dirs_seen: Vec::new(),
        passes: 0,
        status: String::new(),
        native: None,
        repeats: Default::default(),
        backoff: None,
        others_last: (KernelEntries::new(), false),
        given_up: Default::default(),
        _instance: instance,
    };

    let watchdog = sd_notify::watchdog_enabled();
    let mut watchdog_tick =
        tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |usec| usec / 2));
    watchdog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let Some(w) = watchdog {
        tracing::info!("systemd watchdog every {:?}; pinging at half of it", w);
    }

    d.config_dirs_seen = d.existing_config_dirs();
    // Watch before the first pass so nothing that happens during it is missed.
    d.arm();
    let mut running: Option<(oneshot::Receiver<Outcome>, Announce)> =
        Some((d.start("start".into()), Announce::Ready));
    let mut pending = Pending::default();
    let far = || Instant::now() + Duration::from_secs(86400);
    // Whether the "quiet" line was logged since the last thing happened:
    // tests wait for it to know every event so far has been handled.
    let mut said_quiet = false;
    loop {
        if running.is_none() && pending.deadline.is_none() && !said_quiet {
            tracing::debug!("quiet: every event so far is handled");
            said_quiet = true;
        }
        let wake = match (&running, pending.deadline) {
            (None, Some(at)) => Some(at),
            _ => None,
        };
        let expiry = d
            .watch
            .next_expiry(WRITE_QUIET)
            .map(|t| Instant::from_std(t).max(Instant::now()));
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => {
                    said_quiet = false;
                    tracing::trace!("inotify event {:?} {:?}", event.mask, event.name);
                    let t = d.watch.classify(&event);
                    if t.any() {
                        pending.add(t, d.debounce());
                    }
                }
                Some(Err(e)) => {
                    tracing::error!("reading inotify events: {e}; rescanning");
                    pending.add(Trigger { overflow: true, rearm: true, ..Trigger::default() }, d.debounce());
                }
                None => anyhow::bail!("the inotify event stream ended"),
            },
            done = async { (&mut running.as_mut().expect("guarded").0).await }, if running.is_some() => {
                said_quiet = false;
                let announce = running.take().map_or(Announce::Status, |(_, a)| a);
                if let Some(delay) = d.finish(done, announce) {
                    tracing::info!("retrying in {delay:?}");
                    pending.retry(delay);
                }
                if pending.reload {
                    pending.reload = false;
                    running = Some((d.reload(), Announce::Ready));
                }
            }
            _ = tokio::time::sleep_until(wake.unwrap_or_else(far)), if wake.is_some() => {
                let t = pending.take();
                running = d.handle(t).map(|job| (job, Announce::Status));
            }
            _ = tokio::time::sleep_until(expiry.unwrap_or_else(far)), if expiry.is_some() => {
                if d.watch.expire(std::time::Instant::now(), WRITE_QUIET) {
                    pending.add(Trigger { files: true, ..Trigger::default() }, Duration::ZERO);
                }
            }
            _ = signals.hup.recv() => {
                if running.is_some() {
                    tracing::info!("SIGHUP: reloading once the running pass ends");
                    pending.reload = true;
                } else {
                    running = Some((d.reload(), Announce::Ready));
                }
            }
            _ = signals.term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = signals.int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = watchdog_tick.tick(), if watchdog.is_some() => notify::watchdog(),
        }
    }
    notify::stopping();
    if running.is_some() {
        tracing::info!("stopping the running pass and its probes");
        crate::probe::kill_running();
    }
    d.system.state.clear_daemon_status(std::process::id());
    if d.system.config.unregister_on_stop.value && running.is_none() {
        d.unregister_all();
    } else {
        // Say what stays behind: entries outlive qusd by design.
        let owned = d.system.state.load().0.len();
        tracing::info!(
            "qusd stopped; {owned} entries it registered stay registered (`qus unregister --all` \
             removes them; daemon.unregister_on_stop = true makes qusd do it)"
        );
    }
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
    fn debounce(&self) -> Duration {
        Duration::from_millis(self.system.config.debounce_ms.value)
    }

    /// What to watch for the current configuration.
    fn targets(&self) -> Targets {
        let config = &self.system.config;
        let mut dirs: Vec<std::path::PathBuf> = config.search_path.value.clone();
        let mut names: std::collections::HashSet<OsString> = crate::arch::ARCHES
            .iter()
            .flat_map(|a| {
                config
                    .binary_names
                    .value
                    .iter()
                    .map(|t| OsString::from(t.replace("{arch}", a.emulator)))
            })
            .collect();
        let mut note = |path: &std::path::Path| {
            if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
                if !dirs.iter().any(|d| d == dir) {
                    dirs.push(dir.to_path_buf());
                }
                names.insert(name.to_owned());
            }
        };
        let cache = crate::safety::DirCache::default();
        for (_, path) in observe::interpreters(config) {
            note(&path);
            // A symlinked emulator is upgraded where it points, and any link
            // on the way may be re-pointed: watch every hop.
            match crate::safety::resolve(&path, &cache) {
                Ok(r) => {
                    for link in &r.links {
                        note(link);
                    }
                    note(&r.file);
                }
                Err(_) => {
                    if let Ok(resolved) = std::fs::canonicalize(&path) {
                        note(&resolved);
                    }
                }
            }
        }
        Targets {
            binfmt: config.binfmt_path.value.clone(),
            emulator_dirs: dirs,
            emulator_names: names,
            config_dirs: self.common.config_dirs(),
        }
    }

    fn arm(&mut self) {
        let targets = self.targets();
        self.watch.arm(&targets);
    }

    /// Entries left alone this pass: those whose emulator file is still
    /// being written, and those qusd gave up fighting over.
    fn holds(&self) -> std::collections::BTreeSet<String> {
        let mut holds: std::collections::BTreeSet<String> = self.given_up.keys().cloned().collect();
        if self.watch.any_writing() {
            holds.extend(
                observe::interpreters(&self.system.config)
                    .into_iter()
                    .filter(|(_, path)| path.file_name().is_some_and(|n| self.watch.writing(n)))
                    .map(|(name, _)| name),
            );
        }
        holds
    }

    /// `guard.others`: when every other tool's entry vanished at once (a
    /// `-1` to `status`, a WSL flush, a remount), they are to be put back
    /// exactly. An entry removed on its own stays removed: no fights. A
    /// flush takes qus's own entries too; with none of those, at least two
    /// others must have gone together.
    fn flushed_others(&self) -> KernelEntries {
        let (others, owned_any) = &self.others_last;
        if !self.system.config.guard_others.value || others.is_empty() {
            return KernelEntries::new();
        }
        let Some((_, now)) = self.kernel_now() else {
            return KernelEntries::new();
        };
        // Everything gone at once: qus's own entries and every other one.
        let flushed = now.is_empty() && (*owned_any || others.len() >= 2);
        if flushed {
            tracing::warn!(
                "binfmt_misc was flushed: putting back {} entries of other tools",
                others.len()
            );
            others.clone()
        } else {
            KernelEntries::new()
        }
    }

    /// Count identical repairs in quick succession; give up on an entry
    /// after [`GIVE_UP_AFTER`] of them. No loop may run unbounded.
    fn count_repairs(&mut self, repairs: &[(String, String)]) {
        let mut next = std::collections::BTreeMap::new();
        let now = Instant::now();
        for (name, what) in repairs {
            let n = match self.repeats.get(name) {
                Some((last, n, at)) if last == what && now.duration_since(*at) < FIGHT_WINDOW => {
                    n + 1
                }
                _ => 1,
            };
            if n >= GIVE_UP_AFTER {
                let why = format!(
                    "gave up on {name}: the same repair was undone {n} times in a row \
                     (another registrar or qusd with another configuration?); \
                     leaving it until the configuration changes or SIGHUP"
                );
                tracing::error!("{why}");
                self.given_up.insert(name.clone(), why);
            } else {
                next.insert(name.clone(), (what.clone(), n, now));
            }
        }
        self.repeats = next;
    }

    fn existing_config_dirs(&self) -> Vec<std::path::PathBuf> {
        self.common
            .config_dirs()
            .into_iter()
            .filter(|d| d.is_dir())
            .collect()
    }

    /// Load the configuration again; on error keep the previous one. A
    /// config directory that vanished (an unmounted volume, a directory
    /// being replaced) keeps the previous configuration until it is back,
    /// unless the reload was asked for (`SIGHUP`).
    fn reload_config(&mut self, asked: bool) {
        let now = self.existing_config_dirs();
        let gone: Vec<String> = self
            .config_dirs_seen
            .iter()
            .filter(|d| !now.contains(d))
            .map(|d| d.display().to_string())
            .collect();
        if !gone.is_empty() && !asked {
            let e = format!(
                "config directory {} vanished; keeping the previous configuration until it is back (or SIGHUP)",
                gone.join(", ")
            );
            tracing::warn!("{e}");
            self.config_error = Some(e);
            return;
        }
        match self.common.load_config() {
            Ok(config) => {
                if self.config_error.take().is_some() {
                    tracing::info!("configuration is valid again");
                }
                self.config_dirs_seen = now;
                if asked || config != self.system.config {
                    self.given_up.clear();
                    self.repeats.clear();
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
    fn reload(&mut self) -> oneshot::Receiver<Outcome> {
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

    /// Act on a debounced batch of events: a pass, unless the batch is only
    /// the echo of qusd's own writes.
    fn handle(&mut self, t: Trigger) -> Option<oneshot::Receiver<Outcome>> {
        // Watch first, then read: a drop-in written after the config dir
        // (re)appeared but before its watch existed would be lost.
        if t.rearm || t.config || t.overflow {
            self.arm();
        }
        if t.config || t.overflow {
            self.reload_config(false);
            self.arm();
        }
        let unchanged = match (self.kernel_now(), &self.last_kernel) {
            (Some((en, now)), Some((last_en, last))) => {
                en == *last_en && engine::same_kernel(&now, last)
            }
            _ => false,
        };
        if t.kernel_only() && unchanged {
            tracing::debug!(
                "binfmt_misc is as the last pass left it (our own writes); nothing to do"
            );
            return None;
        }
        Some(self.start(t.reasons()))
    }

    /// Start one pass on a thread of its own (it ends with the pass, so an
    /// idle qusd has no thread left to wake up).
    fn start(&mut self, why: String) -> oneshot::Receiver<Outcome> {
        self.passes += 1;
        let holds = self.holds();
        let writing: Vec<&str> = holds
            .iter()
            .filter(|h| !self.given_up.contains_key(*h))
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
    /// Returns when to retry, if the pass failed (1 s, doubling up to 60 s).
    fn finish(
        &mut self,
        done: Result<Outcome, oneshot::error::RecvError>,
        announce: Announce,
    ) -> Option<Duration> {
        let failed = !matches!(done, Ok(Outcome::Done { .. }));
        self.backoff = failed.then(|| {
            self.backoff.map_or(Duration::from_secs(1), |b| {
                (b * 2).min(Duration::from_secs(60))
            })
        });
        match done {
            Ok(Outcome::Done {
                kernel_after,
                native,
                status,
                repairs,
                others,
                owns_any,
            }) => {
                self.others_last = (others, owns_any);
                self.last_kernel = Some(kernel_after);
                if let Some(native) = native {
                    self.native.get_or_insert(native);
                }
                self.status = status;
                self.count_repairs(&repairs);
            }
            Ok(Outcome::Failed(status)) => {
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
        for why in self.given_up.values() {
            self.status.push_str(&format!("; {why}"));
        }
        self.arm();
        self.publish();
        match announce {
            Announce::Ready => {
                notify::ready(&self.status);
                if self.passes == 1 {
                    tracing::info!(
                        "qusd ready: {}; watching {} directories, settling at most {} ms",
                        self.status,
                        self.watch.len(),
                        self.system.config.debounce_ms.value
                    );
                }
            }
            Announce::Status => notify::status(&self.status),
        }
        self.backoff
    }

    /// Publish readiness and status for `qus status --daemon` (before
    /// READY=1: whoever reacts to it may ask at once).
    fn publish(&self) {
        let pid = std::process::id();
        let st = DaemonStatus {
            pid,
            start_time: crate::state::process_start_time(pid).unwrap_or(0),
            ready: true,
            status: self.status.clone(),
        };
        if let Err(e) = self.system.state.write_daemon_status(&st) {
            tracing::warn!("cannot publish the daemon status: {e}");
        }
    }

    /// `daemon.unregister_on_stop`: remove every owned entry.
    fn unregister_all(&self) {
        let request = observe::Request {
            native: self.native.clone(),
            ..observe::Request::default()
        };
        match engine::run(
            &self.system,
            &request,
            crate::plan::Mode::Unregister { names: None },
        ) {
            Ok(p) => tracing::info!(
                "removed {} owned entries (daemon.unregister_on_stop = true)",
                p.outcome.done.len()
            ),
            Err(e) => tracing::error!("removing owned entries at stop: {e:#}"),
        }
    }
}
