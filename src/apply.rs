//! Apply: carry out a plan's actions on binfmt_misc and the ownership
//! records, one log line per action. A failed action is logged and counted;
//! the others still run, so one bad entry never blocks the rest.

use std::io;

use crate::binfmt::{BinfmtMisc, KernelEntry, Registrar};
use crate::model::OwnedEntries;
use crate::plan::{Action, Target};

/// What applying a plan did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Writes made to binfmt_misc (a replace counts as two).
    pub kernel_writes: usize,
    /// Actions that succeeded, in order.
    pub done: Vec<Action>,
    /// Actions that failed, with the reason.
    pub failed: Vec<(Action, String)>,
    /// Did the ownership records change?
    pub records_changed: bool,
    /// Entries that failed because their interpreter is open for writing
    /// (ETXTBSY under `F`): worth trying again once the writer closes.
    pub busy: Vec<String>,
    /// Takeovers that failed (the other entry put back as it was).
    pub failed_takeovers: crate::model::FailedTakeovers,
}

/// Apply `actions` (in the order given: `Plan::actions` orders them) to
/// `binfmt`, keeping `owned` in step.
pub fn apply(actions: Vec<Action>, binfmt: &BinfmtMisc, owned: &mut OwnedEntries) -> Applied {
    let mut applier = Applier {
        binfmt,
        registrar: binfmt.registrar(),
        owned,
        out: Applied::default(),
    };
    for action in actions {
        applier.out.kernel_writes += action.kernel_writes();
        match applier.run(&action) {
            Ok(()) => applier.out.done.push(action),
            Err(e) => {
                tracing::error!(
                    entry = action.entry(),
                    action = "failed",
                    "{}: failed: {e}",
                    action.describe()
                );
                if e.raw_os_error() == Some(libc::ETXTBSY) {
                    applier.out.busy.push(action.entry().to_string());
                }
                applier.out.failed.push((action, e.to_string()));
            }
        }
    }
    applier.out
}

impl Applied {
    /// Fold in what an earlier application (the preparation) did, so one
    /// pass reports one total.
    pub fn after(mut self, earlier: Applied) -> Applied {
        self.kernel_writes += earlier.kernel_writes;
        let mut done = earlier.done;
        done.append(&mut self.done);
        self.done = done;
        let mut failed = earlier.failed;
        failed.append(&mut self.failed);
        self.failed = failed;
        self.records_changed |= earlier.records_changed;
        self.busy.extend(earlier.busy);
        self.failed_takeovers.extend(earlier.failed_takeovers);
        self
    }
}

/// One application in progress: where it writes, and what it did so far.
struct Applier<'a> {
    binfmt: &'a BinfmtMisc,
    registrar: Registrar<'a>,
    owned: &'a mut OwnedEntries,
    out: Applied,
}

impl Applier<'_> {
    fn run(&mut self, action: &Action) -> io::Result<()> {
        match action {
            Action::Mount { path, private } => self.mount(path, *private),
            Action::SwitchOn => self.switch_on(),
            Action::RestoreOther { name, entry } => self.restore_other(name, entry),
            Action::Register(t) => {
                self.registrar.register(&t.name, &t.spec)?;
                log_registered(t, "registered", "");
                self.record(t);
                Ok(())
            }
            Action::Replace { target, reason } => self.replace(target, reason),
            Action::Enable { name } => {
                self.binfmt.set_enabled(name, true)?;
                tracing::info!(entry = %name, action = "enabled", "enabled {name} (it had been disabled)");
                Ok(())
            }
            Action::Unregister { name, reason } => self.unregister(name, reason),
            Action::Restore { name, spec } => {
                self.registrar.register(name, spec)?;
                // The name is handed back: nothing of qus's is left to keep.
                self.forget(name);
                tracing::info!(
                    entry = %name,
                    action = "restored",
                    "restored {name}: interpreter {} (the entry qus had taken over)",
                    spec.interpreter.display()
                );
                Ok(())
            }
            Action::Record(t) => {
                tracing::debug!("recorded {} as owned", t.name);
                self.record(t);
                Ok(())
            }
            Action::Forget { name } => {
                tracing::debug!("forgot {name}: no longer ours");
                self.forget(name);
                Ok(())
            }
        }
    }

    /// Switch binfmt_misc on. A `status` file that cannot be written (WSL's
    /// `[boot] protectBinfmt` bind-mounts a read-only one over it) does not
    /// stop the registrations: they are made, and qus says what it could
    /// not do.
    fn switch_on(&mut self) -> io::Result<()> {
        match self.binfmt.set_all_enabled(true) {
            Ok(()) => {
                tracing::info!(
                    action = "switched-on",
                    "binfmt_misc was disabled globally; enabled it (binfmt.enable = true)"
                );
                Ok(())
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)
                ) =>
            {
                tracing::warn!(
                    action = "not-switched-on",
                    "binfmt_misc's status says disabled and cannot be written ({e}; WSL's \
                     [boot] protectBinfmt makes it read-only): registering without switching \
                     binfmt_misc on; the entries work once it is on"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn mount(&mut self, path: &std::path::Path, private: bool) -> io::Result<()> {
        self.binfmt.ensure_mounted(true)?;
        if !private {
            tracing::info!(
                action = "mounted",
                "mounted binfmt_misc at {}",
                path.display()
            );
        } else {
            tracing::info!(
                action = "mounted",
                "mounted binfmt_misc at {}, an instance private to this user namespace: \
                 its entries work for this namespace's processes and vanish with it",
                path.display()
            );
        }
        Ok(())
    }

    /// Put back another tool's entry a flush wiped, as it was.
    fn restore_other(&mut self, name: &str, entry: &KernelEntry) -> io::Result<()> {
        self.registrar.register(name, &entry.spec)?;
        if !entry.enabled {
            self.binfmt.set_enabled(name, false)?;
        }
        tracing::info!(
            entry = %name,
            action = "restored",
            "restored {name}: interpreter {}, another tool's entry a flush wiped \
             (guard.others = true)",
            entry.spec.interpreter.display()
        );
        Ok(())
    }

    fn replace(&mut self, t: &Target, reason: &str) -> io::Result<()> {
        // A disabled entry of another tool goes back disabled.
        let was_enabled = self.binfmt.entry_enabled(&t.name).unwrap_or(true);
        match self.binfmt.remove(&t.name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // The old entry is gone; forget it before registering so a failed
        // registration does not leave a record of an entry that isn't there.
        self.forget(&t.name);
        if let Err(e) = self.registrar.register(&t.name, &t.spec) {
            // Never lose another tool's entry to a failed takeover: put it
            // back. (Without that, the entry is simply gone now.)
            let back = t.replaced.as_ref().filter(|old| {
                self.registrar.register(&t.name, old).is_ok()
                    && (was_enabled || self.binfmt.set_enabled(&t.name, false).is_ok())
            });
            if let Some(theirs) = back {
                tracing::warn!("{}: the takeover failed; put the other entry back", t.name);
                if e.raw_os_error() != Some(libc::ETXTBSY) {
                    self.out.failed_takeovers.insert(
                        t.name.clone(),
                        crate::model::FailedTakeover {
                            wanted: t.spec.clone(),
                            identity: t.identity,
                            theirs: theirs.clone(),
                            why: e.to_string(),
                        },
                    );
                }
            } else {
                self.out.done.push(Action::Unregister {
                    name: t.name.clone(),
                    reason: "removed by a replace that then failed".into(),
                });
            }
            return Err(e);
        }
        log_registered(t, "replaced", &format!(" ({reason})"));
        self.record(t);
        Ok(())
    }

    fn unregister(&mut self, name: &str, reason: &str) -> io::Result<()> {
        match self.binfmt.remove(name) {
            Ok(()) => {
                tracing::info!(entry = %name, action = "removed", "removed {name} ({reason})")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::info!("{name} was already gone ({reason})")
            }
            Err(e) => return Err(e),
        }
        self.release(name);
        Ok(())
    }

    /// qus's own entry is gone. A record of the entry it replaced stays,
    /// dormant, until that entry is put back (`qus unregister`): qus may
    /// drop its entry for a while (the arch disabled, the emulator unsafe
    /// or moved away) and take the name again, and the other tool's entry
    /// must still come back in the end.
    fn release(&mut self, name: &str) {
        if self.owned.get(name).is_some_and(|o| o.replaced.is_none()) {
            self.forget(name);
        }
    }

    fn record(&mut self, t: &Target) {
        self.owned.insert(t.name.clone(), t.owned());
        self.out.records_changed = true;
    }

    fn forget(&mut self, name: &str) {
        if self.owned.remove(name).is_some() {
            self.out.records_changed = true;
        }
    }
}

/// "registered qemu-aarch64 (aarch64): interpreter … flags PF"
fn log_registered(t: &Target, verb: &'static str, why: &str) {
    tracing::info!(
        entry = %t.name,
        arch = t.arch.as_deref().unwrap_or(""),
        action = verb,
        "{verb} {}{}: interpreter {} flags {}{why}",
        t.name,
        arch_note(t),
        t.spec.interpreter.display(),
        flags_text(t)
    );
}

fn arch_note(t: &Target) -> String {
    t.arch
        .as_ref()
        .map(|a| format!(" ({a})"))
        .unwrap_or_default()
}

fn flags_text(t: &Target) -> String {
    let f = t.spec.flags.to_string();
    if f.is_empty() {
        "none".into()
    } else {
        f
    }
}
