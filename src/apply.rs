//! Apply: carry out a plan's actions on binfmt_misc and the ownership
//! records, one log line per action. A failed action is logged and counted;
//! the others still run, so one bad entry never blocks the rest.

use std::io;

use crate::binfmt::{BinfmtMisc, Registrar};
use crate::model::{Owned, OwnedEntries};
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
}

/// Apply `actions` (in the order given: `Plan::actions` orders them) to
/// `binfmt`, keeping `owned` in step.
pub fn apply(actions: Vec<Action>, binfmt: &BinfmtMisc, owned: &mut OwnedEntries) -> Applied {
    let mut out = Applied::default();
    let mut registrar = binfmt.registrar();
    for action in actions {
        out.kernel_writes += action.kernel_writes();
        match run(&action, binfmt, &mut registrar, owned, &mut out) {
            Ok(()) => out.done.push(action),
            Err(e) => {
                tracing::error!(
                    entry = action.entry(),
                    action = "failed",
                    "{}: failed: {e}",
                    action.describe()
                );
                out.failed.push((action, e.to_string()));
            }
        }
    }
    out
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
        self
    }
}

fn run(
    action: &Action,
    binfmt: &BinfmtMisc,
    registrar: &mut Registrar<'_>,
    owned: &mut OwnedEntries,
    out: &mut Applied,
) -> io::Result<()> {
    match action {
        Action::Mount { path } => {
            binfmt.ensure_mounted(true)?;
            if crate::userns::here().initial {
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
        }
        Action::SwitchOn => {
            binfmt.set_all_enabled(true)?;
            tracing::info!(
                action = "switched-on",
                "binfmt_misc was disabled globally; enabled it (binfmt.enable = true)"
            );
        }
        Action::RestoreOther { name, entry } => {
            registrar.register(name, &entry.spec)?;
            if !entry.enabled {
                binfmt.set_enabled(name, false)?;
            }
            tracing::info!(
                entry = %name,
                action = "restored",
                "restored {name}: interpreter {}, another tool's entry a flush wiped \
                 (guard.others = true)",
                entry.spec.interpreter.display()
            );
        }
        Action::Register(t) => {
            registrar.register(&t.name, &t.spec)?;
            tracing::info!(
                entry = %t.name,
                arch = t.arch.as_deref().unwrap_or(""),
                action = "registered",
                "registered {}{}: interpreter {} flags {}",
                t.name,
                arch_note(t),
                t.spec.interpreter.display(),
                flags_text(t)
            );
            record(owned, t, out);
        }
        Action::Replace { target: t, reason } => {
            match binfmt.remove(&t.name) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            // The old entry is gone; forget it before registering so a failed
            // registration does not leave a record of an entry that isn't there.
            if owned.remove(&t.name).is_some() {
                out.records_changed = true;
            }
            if let Err(e) = registrar.register(&t.name, &t.spec) {
                // Never lose another tool's entry to a failed takeover: put
                // it back. (Without that, the entry is simply gone now.)
                let back = t
                    .replaced
                    .as_ref()
                    .is_some_and(|old| registrar.register(&t.name, old).is_ok());
                if back {
                    tracing::warn!("{}: the takeover failed; put the other entry back", t.name);
                } else {
                    out.done.push(Action::Unregister {
                        name: t.name.clone(),
                        reason: "removed by a replace that then failed".into(),
                    });
                }
                return Err(e);
            }
            tracing::info!(
                entry = %t.name,
                arch = t.arch.as_deref().unwrap_or(""),
                action = "replaced",
                "replaced {}{}: interpreter {} flags {} ({reason})",
                t.name,
                arch_note(t),
                t.spec.interpreter.display(),
                flags_text(t)
            );
            record(owned, t, out);
        }
        Action::Enable { name } => {
            binfmt.set_enabled(name, true)?;
            tracing::info!(entry = %name, action = "enabled", "enabled {name} (it had been disabled)");
        }
        Action::Unregister { name, reason } => {
            match binfmt.remove(name) {
                Ok(()) => {
                    tracing::info!(entry = %name, action = "removed", "removed {name} ({reason})")
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::info!("{name} was already gone ({reason})")
                }
                Err(e) => return Err(e),
            }
            if owned.remove(name).is_some() {
                out.records_changed = true;
            }
        }
        Action::Restore { name, spec } => {
            registrar.register(name, spec)?;
            tracing::info!(
                entry = %name,
                action = "restored",
                "restored {name}: interpreter {} (the entry qus had taken over)",
                spec.interpreter.display()
            );
        }
        Action::Record(t) => {
            tracing::debug!("recorded {} as owned", t.name);
            record(owned, t, out);
        }
        Action::Forget { name } => {
            tracing::debug!("forgot {name}: no longer ours");
            if owned.remove(name).is_some() {
                out.records_changed = true;
            }
        }
    }
    Ok(())
}

fn record(owned: &mut OwnedEntries, t: &Target, out: &mut Applied) {
    owned.insert(
        t.name.clone(),
        Owned {
            arch: t.arch.clone(),
            spec: t.spec.clone(),
            identity: Some(t.identity),
            replaced: t.replaced.clone(),
        },
    );
    out.records_changed = true;
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
