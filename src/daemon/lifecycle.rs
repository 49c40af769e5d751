//! What qusd says and does at the edges of its life: readiness and
//! reloads told to systemd and the status file, and stopping (with
//! `daemon.unregister_on_stop`, removing what it owns).

use super::{notify, Announce, Daemon};
use crate::engine;
use crate::observe;
use crate::state::DaemonStatus;

impl Daemon {
    /// Stopping: tell systemd, kill a running pass's probes, and either
    /// remove what qus owns (`daemon.unregister_on_stop`) or say what
    /// stays behind (entries outlive qusd by design).
    pub(super) fn stop(&self, pass_running: bool) {
        notify::stopping();
        if pass_running {
            tracing::info!("stopping the running pass and its probes");
            crate::probe::kill_running();
        }
        self.system
            .state
            .clear_daemon_status(crate::state::own_process().0);
        if self.system.config.unregister_on_stop.value && !pass_running {
            self.unregister_all();
        } else {
            let owned = self.system.state.load().0.len();
            tracing::info!(
                "qusd stopped; {owned} entries it registered stay registered (`qus unregister --all` \
                 removes them; daemon.unregister_on_stop = true makes qusd do it)"
            );
        }
    }

    pub(super) fn announce(&self, announce: Announce) {
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
    }

    /// Publish readiness and status for `qus status --daemon` (before
    /// READY=1: whoever reacts to it may ask at once).
    pub(super) fn publish(&self) {
        let (pid, start_time) = crate::state::own_process();
        let st = DaemonStatus {
            pid,
            start_time,
            ready: true,
            status: self.status.clone(),
        };
        if let Err(e) = self.system.state.write_daemon_status(&st) {
            tracing::warn!("cannot publish the daemon status: {e}");
        }
    }

    /// `daemon.unregister_on_stop`: remove every owned entry.
    pub(super) fn unregister_all(&self) {
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
                p.applied.done.len()
            ),
            Err(e) => tracing::error!("removing owned entries at stop: {e:#}"),
        }
    }
}
