//! qusd: register at start, then watch and reconcile until stopped.
//!
//! One current-thread tokio runtime waits on four things only: inotify
//! events, the debounce deadline (armed only after an event), signals, and
//! the systemd watchdog tick (only when systemd asks for one). Idle is idle.
//!
//! Each debounced batch of events runs the same observe → plan → apply pass
//! as `qus register`. qusd's own writes to binfmt_misc come back as
//! inotify events; when binfmt_misc is exactly as the last pass left it,
//! those are recognised and cost no pass, so qusd never loops.

mod notify;
mod watch;

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use futures_util::StreamExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use crate::arch;
use crate::binfmt::KernelEntries;
use crate::cli::CommonArgs;
use crate::engine::{self, Context, Request};
use crate::{observe, plan};
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
    match runtime.block_on(run(args.common)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::cli::print_error(&e);
            ExitCode::from(1)
        }
    }
}

/// The daemon's state between passes.
struct Daemon {
    common: CommonArgs,
    ctx: Context,
    watch: WatchSet,
    /// binfmt_misc (global switch + entries) as the last pass left it.
    last_kernel: Option<(bool, KernelEntries)>,
    /// The error of the newest configuration, when it was rejected.
    config_error: Option<String>,
    passes: u64,
    status: String,
    /// Native verdicts from the first pass: the host does not change.
    native: Option<std::collections::BTreeMap<String, observe::Native>>,
}

async fn run(common: CommonArgs) -> Result<()> {
    // Handlers first: a SIGHUP that arrives right after READY=1 (systemd's
    // `reload` may) must reload, not kill us with its default action.
    // (Found by the soak test.)
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    // Bad configuration at start: exit 1 with file:line (systemd shows it).
    let config = common.load_config()?;
    let ctx = Context::new(config, common.state_dir(), common.host());
    let inotify = inotify::Inotify::init().context("inotify_init")?;
    let mut events = inotify
        .into_event_stream(vec![0u8; 64 * 1024])
        .context("inotify event stream")?;
    let mut d = Daemon {
        watch: WatchSet::new(events.watches()),
        common,
        ctx,
        last_kernel: None,
        config_error: None,
        passes: 0,
        status: String::new(),
        native: None,
    };
    // Watch before the first pass so nothing that happens during it is missed.
    d.arm();
    d.pass("start")?;
    d.arm();
    // Publish for `qus status --daemon` first: whoever reacts to READY=1
    // may ask it at once.
    d.publish();
    notify::ready(&d.status);
    tracing::info!(
        "qusd ready: {}; watching {} directories, debounce {} ms",
        d.status,
        d.watch.len(),
        d.ctx.config.debounce_ms.value
    );

    let watchdog = sd_notify::watchdog_enabled();
    let mut watchdog_tick =
        tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |usec| usec / 2));
    watchdog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let Some(w) = watchdog {
        tracing::info!("systemd watchdog every {:?}; pinging at half of it", w);
    }

    let mut pending = Trigger::default();
    let mut deadline: Option<Instant> = None;
    loop {
        let sleep_target = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86400));
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => {
                    let t = d.watch.classify(&event);
                    if t.any() {
                        pending.merge(t);
                        deadline = Some(Instant::now() + d.debounce());
                    }
                }
                Some(Err(e)) => {
                    tracing::error!("reading inotify events: {e}; rescanning");
                    pending.merge(Trigger { overflow: true, rearm: true, ..Trigger::default() });
                    deadline = Some(Instant::now() + d.debounce());
                }
                None => anyhow::bail!("the inotify event stream ended"),
            },
            _ = tokio::time::sleep_until(sleep_target), if deadline.is_some() => {
                deadline = None;
                let t = std::mem::take(&mut pending);
                d.handle(t);
            }
            _ = hup.recv() => {
                notify::reloading();
                tracing::info!("SIGHUP: reloading configuration");
                d.reload_config();
                d.arm();
                let _ = d.pass("SIGHUP");
                d.arm();
                d.publish();
                notify::ready(&d.status);
            }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = watchdog_tick.tick(), if watchdog.is_some() => notify::watchdog(),
        }
    }
    notify::stopping();
    d.ctx.state.clear_daemon_status();
    if d.ctx.config.unregister_on_stop.value {
        match engine::unregister(&d.ctx, None) {
            Ok(o) => tracing::info!(
                "removed {} owned entries (daemon.unregister_on_stop = true)",
                o.done.len()
            ),
            Err(e) => tracing::error!("removing owned entries at stop: {e:#}"),
        }
    }
    Ok(())
}

impl Daemon {
    fn debounce(&self) -> Duration {
        Duration::from_millis(self.ctx.config.debounce_ms.value)
    }

    /// What to watch for the current configuration.
    fn targets(&self) -> Targets {
        let config = &self.ctx.config;
        let mut dirs: Vec<std::path::PathBuf> = config.search_path.value.clone();
        let mut names: HashSet<OsString> = HashSet::new();
        let note = |path: &std::path::Path,
                    dirs: &mut Vec<std::path::PathBuf>,
                    names: &mut HashSet<OsString>| {
            if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
                if !dirs.iter().any(|d| d == dir) {
                    dirs.push(dir.to_path_buf());
                }
                names.insert(name.to_owned());
            }
            // A symlinked emulator is upgraded where it points.
            if let Ok(resolved) = std::fs::canonicalize(path) {
                if let (Some(dir), Some(name)) = (resolved.parent(), resolved.file_name()) {
                    if !dirs.iter().any(|d| d == dir) {
                        dirs.push(dir.to_path_buf());
                    }
                    names.insert(name.to_owned());
                }
            }
        };
        for a in arch::ARCHES {
            for template in &config.binary_names.value {
                names.insert(OsString::from(template.replace("{arch}", a.emulator)));
            }
            if let Some(path) = observe::find_emulator(config, a) {
                note(&path, &mut dirs, &mut names);
            }
        }
        for entry in config.entries.values() {
            note(&entry.spec.interpreter, &mut dirs, &mut names);
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

    /// `daemon.verify`: run the probe of every arch this pass registered or
    /// replaced, so a broken emulator is reported now, not at the first
    /// failed build.
    fn verify(&mut self, pass: &engine::Pass) {
        let (mut ok, mut failed) = (0, vec![]);
        for action in &pass.outcome.done {
            let (plan::Action::Register(t) | plan::Action::Replace { target: t, .. }) = action
            else {
                continue;
            };
            let Some(probe) = t.arch.as_deref().and_then(crate::probe::find) else {
                continue;
            };
            match crate::probe::run(probe, Duration::from_secs(10)) {
                crate::probe::RunResult::Pass => {
                    ok += 1;
                    tracing::info!("verified {}: the {} probe ran", t.name, probe.arch);
                }
                crate::probe::RunResult::ExecFormatError => {
                    tracing::error!("verification of {} failed: exec format error", t.name);
                    failed.push(t.name.clone());
                }
                crate::probe::RunResult::Fail(why) => {
                    tracing::error!("verification of {} failed: {why}", t.name);
                    failed.push(t.name.clone());
                }
            }
        }
        if ok + failed.len() > 0 {
            self.status.push_str(&format!("; verified {ok}"));
            if !failed.is_empty() {
                self.status
                    .push_str(&format!(", verification FAILED: {}", failed.join(" ")));
            }
        }
    }

    /// Entries whose emulator file is still being written wait.
    fn held(&self) -> BTreeSet<String> {
        let mut hold = BTreeSet::new();
        if self.watch.in_progress.is_empty() {
            return hold;
        }
        let busy = |path: &std::path::Path| {
            path.file_name()
                .is_some_and(|n| self.watch.in_progress.contains(n))
        };
        for a in arch::ARCHES {
            if let Some(p) = observe::find_emulator(&self.ctx.config, a) {
                if busy(&p) {
                    hold.insert(self.ctx.config.entry_name(a.name));
                }
            }
        }
        for (name, e) in &self.ctx.config.entries {
            if busy(&e.spec.interpreter) {
                hold.insert(name.clone());
            }
        }
        hold
    }

    /// Load the configuration again; on error keep the previous one.
    fn reload_config(&mut self) {
        match self.common.load_config() {
            Ok(config) => {
                if self.config_error.take().is_some() {
                    tracing::info!("configuration is valid again");
                }
                if config != self.ctx.config {
                    tracing::info!("configuration reloaded from {} file(s)", config.files.len());
                    self.ctx = Context::new(config, self.common.state_dir(), self.ctx.host.clone());
                }
            }
            Err(e) => {
                tracing::error!("configuration rejected, keeping the previous one: {e:#}");
                self.config_error = Some(format!("{e:#}"));
            }
        }
    }

    fn kernel_now(&self) -> Option<(bool, KernelEntries)> {
        if !self.ctx.binfmt.is_mounted() {
            return None;
        }
        let enabled = self.ctx.binfmt.enabled().ok()?;
        let entries = engine::kernel_entries(&self.ctx.binfmt).ok()?;
        Some((enabled, entries))
    }

    /// Act on a debounced batch of events.
    fn handle(&mut self, t: Trigger) {
        if t.config || t.overflow {
            self.reload_config();
        }
        if t.rearm || t.config || t.overflow {
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
            return;
        }
        let _ = self.pass(&t.reasons());
        self.arm();
        self.publish();
        notify::status(&self.status);
    }

    /// Publish readiness and status for `qus status --daemon`.
    fn publish(&self) {
        let st = crate::state::DaemonStatus {
            pid: std::process::id(),
            ready: true,
            status: self.status.clone(),
        };
        if let Err(e) = self.ctx.state.write_daemon_status(&st) {
            tracing::warn!("cannot publish the daemon status: {e}");
        }
    }

    /// One observe → plan → apply pass.
    fn pass(&mut self, why: &str) -> Result<()> {
        self.passes += 1;
        let hold = self.held();
        if !hold.is_empty() {
            tracing::info!(
                "waiting for {} to be written completely",
                hold.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        let request = Request {
            hold,
            native: self.native.clone(),
            ..Request::default()
        };
        match engine::reconcile_with(&self.ctx, &request) {
            Ok(pass) => {
                self.last_kernel = Some((pass.enabled_after, pass.kernel_after.clone()));
                if self.native.is_none() {
                    self.native = Some(pass.native.clone());
                }
                self.status = pass.summary();
                if self.ctx.config.verify.value {
                    self.verify(&pass);
                }
                if let Some(e) = &self.config_error {
                    self.status.push_str(&format!(
                        "; config error (previous configuration kept): {e}"
                    ));
                }
                tracing::info!(
                    "pass {} ({why}): {} writes to binfmt_misc; {}",
                    self.passes,
                    pass.outcome.kernel_writes,
                    self.status
                );
                Ok(())
            }
            Err(e) => {
                self.last_kernel = None;
                self.status = format!("error: {e:#}");
                tracing::error!("pass {} ({why}) failed: {e:#}", self.passes);
                Err(e)
            }
        }
    }
}
