//! One pass: lock, observe, plan, apply, save the records. `qus register`
//! and `qus unregister` run one; `qusd` runs one for every debounced batch
//! of events (off its event loop: a pass may run probes and wait for the
//! lock).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::apply::{self, Applied};
use crate::binfmt::KernelEntries;
use crate::model::{NativeVerdicts, World};
use crate::observe::{self, Request, System};
use crate::plan::{self, Action, EntryState, Mode, Plan, Preparation};
use crate::state::Lock;

/// Result of one pass.
#[derive(Debug)]
pub struct Outcome {
    pub world: World,
    pub mode: Mode,
    pub plan: Plan,
    pub applied: Applied,
    /// Why the ownership records could not be kept, if so.
    pub records_note: Option<String>,
    /// The ownership records after the pass.
    pub owned_after: crate::model::OwnedEntries,
    /// Why the state dir was refused, when the pass ran on qusd's own
    /// records instead.
    pub state_refused: Option<String>,
    /// binfmt_misc (global switch, entries) as this pass left it: what the
    /// daemon compares later events against, to tell its own writes from
    /// others'. Computed from what the pass did, never re-read: a change
    /// someone else makes meanwhile must still look like a change.
    pub kernel_after: (bool, KernelEntries),
}

impl Outcome {
    /// The native verdicts this pass used.
    pub fn native(&self) -> &NativeVerdicts {
        &self.world.native
    }

    /// Entries (in scope) that are registered as wanted after this pass.
    pub fn registered(&self) -> usize {
        let failed: BTreeSet<&str> = self
            .applied
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
                    && i.state != EntryState::Conflict
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
    pub fn count(&self, state: EntryState) -> usize {
        self.in_scope().filter(|i| i.state == state).count()
    }

    /// One line for people and for sd_notify's STATUS=.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} registered, {} errors",
            self.registered(),
            self.applied.failed.len()
        );
        for (state, word) in [
            (EntryState::Refused, "refused"),
            (EntryState::Conflict, "conflicts"),
        ] {
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
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Observe and plan without writing anything (`qus status`, `qus export`;
/// a command that wants its caches kept calls [`keep_caches`] when done).
pub fn survey(system: &System, request: &Request) -> Result<(World, Plan)> {
    let world = observe::observe(system, request)?;
    let plan = plan::plan(&world, &Mode::reconcile(system.config.takeover.value));
    Ok((world, plan))
}

/// Only root may change the host's instance: say what to do instead,
/// rather than failing on the first write with "Permission denied".
pub fn may_change(system: &System) -> Result<()> {
    let place = &system.place;
    if place.initial
        && place.euid != 0
        && crate::userns::instance_at(system.binfmt.root()) == crate::userns::Instance::Host
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

/// Lock, prepare binfmt_misc (mount, switch on, put back what a flush
/// wiped: steps of the plan like any other), observe, plan for `mode`,
/// apply, save the records and the native verdicts.
pub fn run(system: &System, request: &Request, mode: Mode) -> Result<Outcome> {
    may_change(system)?;
    // qusd, with records of its own, goes on past a refused state dir:
    // without a lock (one there could be held by anyone) and writing
    // nothing there.
    let refused = request.remembered.as_ref().and(system.state.refusal());
    let (lock, mut records_note) = take_lock(system, refused.as_deref())?;
    let reconciling = matches!(mode, Mode::Reconcile { .. });
    let prepared = if reconciling {
        prepare(system, request)?
    } else {
        Applied::default()
    };
    let mut world = observe::observe(system, request)?;
    if refused.is_some() {
        // qusd's own records (observe took them): keep them, take nothing
        // over (no record of it could be written), write nothing there.
        world.records_unwritable = Some("the state dir is refused".into());
    } else if matches!(lock, Lock::ReadOnly(_)) {
        // Records nobody can update (and no lock to share with qusd): act
        // as with none. qus then adopts identical entries and removes none.
        world.owned.clear();
        world.restorable.clear();
        world.restore_refused.clear();
        world.records_unwritable = Some("the state dir is read-only".into());
    } else {
        keep_caches(system, &world);
    }
    let plan = plan::plan(&world, &mode);
    if reconciling {
        warn_if_no_emulator(system, &plan);
    }
    warn_conflicts(&plan, &mode);
    let mut owned = world.owned.clone();
    let actions = write_ahead(system, &owned, plan.actions());
    let outcome = apply::apply(actions, &system.binfmt, &mut owned);
    if outcome.records_changed && records_note.is_none() {
        if let Err(e) = system.state.save(&owned) {
            tracing::warn!("cannot save ownership records: {e}; the kernel's view still holds");
            records_note = Some(format!("cannot save ownership records: {e}"));
        }
    }
    // The global switch as this pass means to leave it: on, where qus
    // keeps it on (`binfmt.enable`). Read from the kernel instead, a
    // switch-off that lands between the preparation and the observation
    // would pass for qusd's own echo and never be repaired.
    let keeps_on = reconciling
        && system.config.binfmt_enable.value
        && world.mounted
        && !request.holds.contains(plan::SWITCH_HOLD);
    let kernel_after = (
        world.enabled.unwrap_or(false) || keeps_on,
        plan::kernel_after(&world.kernel, &outcome.done),
    );
    drop(lock);
    Ok(Outcome {
        world,
        mode,
        plan,
        applied: outcome.after(prepared),
        records_note,
        owned_after: owned,
        state_refused: refused,
        kernel_after,
    })
}

/// The state dir's lock, and why the records cannot be kept, if so. A
/// refused state dir (`refused`) is not locked: a lock there could be
/// held by anyone.
fn take_lock(system: &System, refused: Option<&str>) -> Result<(Lock, Option<String>)> {
    if let Some(why) = refused {
        let note = format!("state dir refused ({why}): repairing from qusd's own records");
        return Ok((Lock::ReadOnly(why.to_string()), Some(note)));
    }
    let lock = system
        .state
        .lock(LOCK_WAIT)
        .context("taking the state-dir lock")?;
    let note = match &lock {
        Lock::ReadOnly(why) => {
            tracing::warn!("working without ownership records: {why}");
            Some("state dir read-only: no ownership records".to_string())
        }
        Lock::Held(_) => None,
    };
    Ok((lock, note))
}

/// Record what each takeover replaces before replacing it (write-ahead):
/// killed between the two, the record still holds the other tool's entry,
/// so `qus unregister` can put it back. A takeover whose record cannot be
/// written is dropped (and said): never replace what cannot be recorded.
fn write_ahead(
    system: &System,
    owned: &crate::model::OwnedEntries,
    actions: Vec<Action>,
) -> Vec<Action> {
    let is_new_takeover = |a: &Action| match a {
        Action::Replace { target, .. } => {
            target.replaced.is_some()
                && owned.get(&target.name).and_then(|o| o.replaced.as_ref())
                    != target.replaced.as_ref()
        }
        _ => false,
    };
    if !actions.iter().any(is_new_takeover) {
        return actions;
    }
    let mut ahead = owned.clone();
    for a in actions.iter().filter(|a| is_new_takeover(a)) {
        if let Action::Replace { target, .. } = a {
            ahead.insert(target.name.clone(), target.owned());
        }
    }
    match system.state.save(&ahead) {
        Ok(()) => actions,
        Err(e) => {
            let (dropped, kept): (Vec<Action>, Vec<Action>) =
                actions.into_iter().partition(|a| is_new_takeover(a));
            for a in &dropped {
                tracing::warn!(
                    entry = a.entry(),
                    action = "not-taken-over",
                    "not taking over {}: what it replaces could not be recorded first ({e}); \
                     left as it is",
                    a.entry()
                );
            }
            kept
        }
    }
}

/// Keep what took a child or a probe to learn: native verdicts, for the
/// rest of the boot, and the QEMU versions of emulators, by file identity.
/// The one writer of both caches, and the one write a command that changes
/// nothing (`status`, `test`, `which`, `binfmt --version`) may make, once,
/// when it is done. (A step of the pass, not of observing: the dry run
/// skips it.)
pub fn keep_caches(system: &System, world: &World) {
    if let Some(key) = &world.native_cache_key {
        system.state.save_native(key, &world.native);
    }
    system.versions.save();
}

/// The preparation planned from what binfmt_misc looks like now: the
/// same step the pass applies and the dry run shows.
pub fn preparation(system: &System, request: &Request) -> Result<Preparation> {
    let config = &system.config;
    let allowed = plan::Allowed {
        path: system.binfmt.root().to_path_buf(),
        private: !system.place.initial,
        mount: config.binfmt_mount.value,
        enable: config.binfmt_enable.value,
        switch_held: request.holds.contains(plan::SWITCH_HOLD),
    };
    let ready = observe::readiness(&system.binfmt);
    let flushed = observe::flushed(&request.restore);
    plan::prepare(ready, &allowed, &flushed).map_err(anyhow::Error::msg)
}

/// Mount binfmt_misc where it is not (a container's `/proc` has none), as
/// the planned step a pass would take, applied like any other action:
/// for the commands that do it first (`qus test`, and the peers'
/// interfaces, as those tools do). Only the mount: switching binfmt_misc
/// on and putting back flushed entries are a pass's. Returns whether it
/// mounted; unmounted and not allowed to mount is an error.
pub fn mount(system: &System, may_mount: bool) -> Result<bool> {
    let allowed = plan::Allowed {
        path: system.binfmt.root().to_path_buf(),
        private: !system.place.initial,
        mount: may_mount,
        enable: false,
        switch_held: false,
    };
    let ready = observe::readiness(&system.binfmt);
    let preparation = plan::prepare(ready, &allowed, &[]).map_err(anyhow::Error::msg)?;
    let mounts: Vec<Action> = preparation
        .actions
        .into_iter()
        .filter(|a| matches!(a, Action::Mount { .. }))
        .collect();
    if mounts.is_empty() {
        return Ok(false);
    }
    let applied = apply::apply(
        mounts,
        &system.binfmt,
        &mut crate::model::OwnedEntries::new(),
    );
    if let Some((action, e)) = applied.failed.first() {
        anyhow::bail!("{}: {e}", action.describe());
    }
    Ok(true)
}

/// Apply the preparation. binfmt_misc that cannot be mounted or switched
/// on fails the pass, as nothing after it could work; an entry of another
/// tool that cannot be put back is logged, and the rest still go back.
fn prepare(system: &System, request: &Request) -> Result<Applied> {
    let preparation = preparation(system, request)?;
    for note in &preparation.notes {
        tracing::warn!("{note}");
    }
    let applied = apply::apply(
        preparation.actions,
        &system.binfmt,
        &mut crate::model::OwnedEntries::new(),
    );
    if let Some((action, e)) = applied
        .failed
        .iter()
        .find(|(a, _)| matches!(a, Action::Mount { .. } | Action::SwitchOn))
    {
        anyhow::bail!("{}: {e}", action.describe());
    }
    Ok(applied)
}

/// What a pass would do, without doing it (`--dry-run`): no lock, no
/// mount, no write to binfmt_misc or the state dir.
pub fn dry_run(system: &System, request: &Request, mode: Mode) -> Result<DryRun> {
    let preparation = match mode {
        Mode::Reconcile { .. } => preparation(system, request)?,
        Mode::Unregister { .. } => Preparation::default(),
    };
    let world = observe::observe(system, request)?;
    let plan = plan::plan(&world, &mode);
    Ok(DryRun {
        preparation,
        world,
        mode,
        plan,
    })
}

/// A planned pass, not applied.
#[derive(Debug)]
pub struct DryRun {
    pub preparation: Preparation,
    pub world: World,
    pub mode: Mode,
    pub plan: Plan,
}

impl DryRun {
    /// Every action the pass would take, in order.
    pub fn actions(&self) -> Vec<Action> {
        let mut all = self.preparation.actions.clone();
        all.extend(self.plan.actions());
        all
    }
}

/// Say which entries are left alone as conflicts.
fn warn_conflicts(plan: &Plan, mode: &Mode) {
    for item in &plan.items {
        if item.state == EntryState::Conflict && mode.in_scope(&item.name) {
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
}

/// "Nothing happened" must not look like success: when the configuration
/// wants foreign arches and not one emulator was found for any of them,
/// say where qus looked.
fn warn_if_no_emulator(system: &System, plan: &plan::Plan) {
    let arch_items = || plan.items.iter().filter(|i| i.arch.is_some());
    let wanted_missing = arch_items().any(|i| i.state == EntryState::NoInterpreter);
    let any_found = arch_items().any(|i| {
        !matches!(
            i.state,
            EntryState::NoInterpreter | EntryState::Native | EntryState::Excluded
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
