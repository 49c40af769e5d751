//! One pass: lock, observe, plan, apply, save the records. `qus register`
//! and `qus unregister` run one; `qusd` runs one for every debounced batch
//! of events (off its event loop: a pass may run probes and wait for the
//! lock).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::apply::{self, Outcome};
use crate::binfmt::KernelEntries;
use crate::model::{NativeVerdicts, World};
use crate::observe::{self, Request, System};
use crate::plan::{self, Action, Mode, Plan, State};
use crate::state::Lock;

/// Result of one pass.
#[derive(Debug)]
pub struct Pass {
    pub world: World,
    pub mode: Mode,
    pub plan: Plan,
    pub outcome: Outcome,
    /// Why the ownership records could not be kept, if so.
    pub records_note: Option<String>,
    /// The ownership records after the pass.
    pub owned_after: crate::model::OwnedEntries,
    /// binfmt_misc (global switch, entries) as this pass left it: what the
    /// daemon compares later events against, to tell its own writes from
    /// others'. Computed from what the pass did, never re-read: a change
    /// someone else makes meanwhile must still look like a change.
    pub kernel_after: (bool, KernelEntries),
}

impl Pass {
    /// The native verdicts this pass used.
    pub fn native(&self) -> &NativeVerdicts {
        &self.world.native
    }

    /// Entries (in scope) that are registered as wanted after this pass.
    pub fn registered(&self) -> usize {
        let failed: BTreeSet<&str> = self
            .outcome
            .failed
            .iter()
            .filter_map(|(a, _)| match a {
                Action::Register(t) | Action::Replace { target: t, .. } => Some(t.name.as_str()),
                _ => None,
            })
            .collect();
        self.in_scope()
            .filter(|i| {
                i.wanted.is_some()
                    && i.state != State::Conflict
                    && !failed.contains(i.name.as_str())
            })
            .count()
    }

    fn in_scope(&self) -> impl Iterator<Item = &plan::Item> {
        self.plan
            .items
            .iter()
            .filter(|i| self.mode.in_scope(&i.name))
    }

    /// Items in scope with this state.
    pub fn count(&self, state: State) -> usize {
        self.in_scope().filter(|i| i.state == state).count()
    }

    /// One line for people and for sd_notify's STATUS=.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} registered, {} errors",
            self.registered(),
            self.outcome.failed.len()
        );
        for (state, word) in [(State::Refused, "refused"), (State::Conflict, "conflicts")] {
            let n = self.count(state);
            if n > 0 {
                s.push_str(&format!(", {n} {word}"));
            }
        }
        if let Some(note) = &self.records_note {
            s.push_str(&format!("; {note}"));
        }
        s
    }
}

/// How long a pass waits for another qus or qusd to release the lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Observe and plan without changing anything (`qus status`, `qus export`).
pub fn survey(system: &System, request: &Request) -> Result<(World, Plan)> {
    let world = observe::observe(system, request)?;
    let plan = plan::plan(&world, &Mode::reconcile(system.config.takeover.value));
    Ok((world, plan))
}

/// Only root may change the host's instance: say what to do instead,
/// rather than failing on the first write with "Permission denied".
pub fn may_change(system: &System) -> Result<()> {
    let place = crate::userns::here();
    if place.initial
        && place.euid != 0
        && crate::userns::instance_at(system.binfmt.root()) == crate::model::Instance::Host
    {
        anyhow::bail!(
            "changing the host's binfmt_misc needs root: run it with sudo; without root, \
             register into a user namespace of your own (Linux 6.7+): \
             `qus podman register ARCH`, `qus run -- CMD` or `qus buildah …` \
             (README: \"Without root\")"
        );
    }
    Ok(())
}

/// Lock, mount and switch on binfmt_misc if needed and allowed, observe,
/// plan for `mode`, apply, save the records.
pub fn run(system: &System, request: &Request, mode: Mode) -> Result<Pass> {
    may_change(system)?;
    let lock = system
        .state
        .lock(LOCK_WAIT)
        .context("taking the state-dir lock")?;
    let mut records_note = None;
    if let Lock::ReadOnly(why) = &lock {
        tracing::warn!("working without ownership records: {why}");
        records_note = Some("state dir read-only: no ownership records".to_string());
    }
    let reconciling = matches!(mode, Mode::Reconcile { .. });
    if reconciling {
        if system
            .binfmt
            .ensure_mounted(system.config.binfmt_mount.value)?
        {
            if crate::userns::here().initial {
                tracing::info!("mounted binfmt_misc at {}", system.binfmt.root().display());
            } else {
                tracing::info!(
                    "mounted binfmt_misc at {}, an instance private to this user namespace: \
                     its entries work for this namespace's processes and vanish with it",
                    system.binfmt.root().display()
                );
            }
        }
        switch_on(system)?;
        restore_others(system, &request.restore);
    }
    let mut world = observe::observe(system, request)?;
    if matches!(lock, Lock::ReadOnly(_)) {
        // Records nobody can update (and no lock to share with qusd): act
        // as with none. qus then adopts identical entries and removes none.
        world.owned.clear();
        world.restorable.clear();
    }
    let plan = plan::plan(&world, &mode);
    if reconciling {
        warn_if_no_emulator(system, &plan);
    }
    for item in &plan.items {
        if item.state == State::Conflict && mode.in_scope(&item.name) {
            tracing::warn!(
                entry = %item.name,
                arch = item.arch.as_deref().unwrap_or(""),
                action = "conflict",
                "conflict {}: {}",
                item.name,
                item.detail.as_deref().unwrap_or("")
            );
        }
    }
    let mut owned = world.owned.clone();
    let outcome = apply::apply(plan.actions(), &system.binfmt, &mut owned);
    if outcome.records_changed && records_note.is_none() {
        if let Err(e) = system.state.save(&owned) {
            tracing::warn!("cannot save ownership records: {e}; the kernel's view still holds");
            records_note = Some(format!("cannot save ownership records: {e}"));
        }
    }
    let kernel_after = (
        world.enabled.unwrap_or(false),
        plan::kernel_after(&world.kernel, &outcome.done),
    );
    drop(lock);
    Ok(Pass {
        world,
        mode,
        plan,
        outcome,
        records_note,
        owned_after: owned,
        kernel_after,
    })
}

/// Put back other tools' entries a flush wiped, exactly as they were
/// (enabled or not). One that fails is logged; the rest still go back.
fn restore_others(system: &System, entries: &KernelEntries) {
    let mut restored = 0;
    let dirs = crate::safety::DirCache::default();
    for (name, entry) in entries {
        // The same rules as for qus's own interpreters: a flush must not
        // become a way to get a file someone else controls registered.
        if let Err(r) = crate::safety::check_interpreter(&entry.spec.interpreter, &dirs) {
            tracing::warn!("not restoring {name} after the flush: {r}");
            continue;
        }
        let done = system.binfmt.register(name, &entry.spec).and_then(|()| {
            if entry.enabled {
                Ok(())
            } else {
                system.binfmt.set_enabled(name, false)
            }
        });
        match done {
            Ok(()) => restored += 1,
            Err(e) => tracing::error!("cannot restore {name} after the flush: {e}"),
        }
    }
    if restored > 0 {
        tracing::info!(
            "restored {restored} entries of other tools that a flush wiped (guard.others = true)"
        );
    }
}

/// "Nothing happened" must not look like success: when the configuration
/// wants foreign arches and not one emulator was found for any of them,
/// say where qus looked.
fn warn_if_no_emulator(system: &System, plan: &plan::Plan) {
    let arch_items = || plan.items.iter().filter(|i| i.arch.is_some());
    let wanted_missing = arch_items().any(|i| i.state == State::NoInterpreter);
    let any_found = arch_items().any(|i| {
        !matches!(
            i.state,
            State::NoInterpreter | State::Native | State::Excluded
        )
    });
    if wanted_missing && !any_found {
        let dirs: Vec<String> = system
            .config
            .search_path
            .value
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        tracing::warn!(
            "no QEMU emulator found for any wanted arch in {} (searched for {}): install \
             qemu-user-static, or set qemu.search_path",
            dirs.join(", "),
            system.config.binary_names.value.join(", ")
        );
    }
}

/// Turn binfmt_misc's global switch back on when it is off and the
/// configuration allows it.
fn switch_on(system: &System) -> Result<()> {
    if !system.binfmt.is_mounted() || system.binfmt.enabled().unwrap_or(true) {
        return Ok(());
    }
    if !system.config.binfmt_enable.value {
        tracing::warn!("binfmt_misc is disabled globally; no entry works until it is enabled (binfmt.enable = false)");
        return Ok(());
    }
    system
        .binfmt
        .set_all_enabled(true)
        .context("turning binfmt_misc back on")?;
    tracing::info!("binfmt_misc was disabled globally; enabled it (binfmt.enable = true)");
    Ok(())
}
