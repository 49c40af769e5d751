//! observe → plan → apply, once. `qus register` runs it one time; `qusd`
//! runs it on every debounced batch of events.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::apply::{self, Outcome};
use crate::binfmt::{BinfmtMisc, KernelEntries};
use crate::config::Config;
use crate::observe::{self, Host, Native, Overrides};
use crate::plan::{self, Action, Options, Plan};
use crate::state::StateDir;

/// Everything one reconcile needs to know about where things are.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Config,
    pub binfmt: BinfmtMisc,
    pub state: StateDir,
    pub host: Host,
}

impl Context {
    pub fn new(config: Config, state_dir: PathBuf, host: Host) -> Context {
        Context {
            binfmt: BinfmtMisc::new(config.binfmt_path.value.clone()),
            state: StateDir::new(state_dir),
            config,
            host,
        }
    }
}

/// What binfmt_misc holds once `done` was applied to `before`.
fn expected_after(before: &KernelEntries, done: &[Action]) -> KernelEntries {
    let mut k = before.clone();
    for action in done {
        match action {
            Action::Register(t) | Action::Replace { target: t, .. } => {
                k.insert(
                    t.name.clone(),
                    crate::binfmt::KernelEntry {
                        enabled: true,
                        spec: t.spec.clone(),
                    },
                );
            }
            Action::Enable { name } => {
                if let Some(e) = k.get_mut(name) {
                    e.enabled = true;
                }
            }
            Action::Unregister { name, .. } => {
                k.remove(name);
            }
            Action::Record(_) | Action::Forget { .. } => {}
        }
    }
    k
}

/// Do both hold the same entries, compared the way the kernel shows them
/// (masked magic, C as OC)?
pub fn same_kernel(a: &KernelEntries, b: &KernelEntries) -> bool {
    a.len() == b.len()
        && a.iter().all(|(name, e)| {
            b.get(name)
                .is_some_and(|f| f.enabled == e.enabled && f.spec.equivalent(&e.spec))
        })
}

/// The kernel's entries, or none when binfmt_misc is not mounted.
pub fn kernel_entries(binfmt: &BinfmtMisc) -> Result<KernelEntries> {
    if !binfmt.is_mounted() {
        return Ok(KernelEntries::new());
    }
    let (good, bad) = binfmt
        .entries()
        .with_context(|| format!("reading {}", binfmt.root().display()))?;
    for (name, why) in bad {
        tracing::warn!("cannot parse binfmt_misc entry {name}: {why}; leaving it alone");
    }
    Ok(good)
}

/// Native verdicts: the given ones, or decided now (and logged).
pub fn native_now(
    ctx: &Context,
    kernel: &KernelEntries,
    owned: &std::collections::BTreeMap<String, plan::Owned>,
    known: Option<&BTreeMap<String, Native>>,
) -> BTreeMap<String, Native> {
    if let Some(k) = known {
        return k.clone();
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let key = format!("{} {}", boot_id.trim(), ctx.host.machine);
    if let Some(cached) = ctx.state.load_native(&key) {
        return cached;
    }
    let enabled = ctx.binfmt.is_mounted() && ctx.binfmt.enabled().unwrap_or(false);
    let verdicts = observe::native_verdicts(&ctx.host, kernel, owned, enabled);
    ctx.state.save_native(&key, &verdicts);
    for (arch, v) in &verdicts {
        match v {
            Native::Yes(why) => tracing::debug!("native {arch}: {why}"),
            Native::No(why) => tracing::info!("{arch} is not native here: {why}"),
        }
    }
    verdicts
}

/// The wanted set as of now (for `qus export`).
pub fn wanted_now(ctx: &Context) -> Result<plan::Wanted> {
    let kernel = kernel_entries(&ctx.binfmt)?;
    let (owned, _) = ctx.state.load();
    let native = native_now(ctx, &kernel, &owned, None);
    Ok(observe::wanted(&ctx.config, &native, &Overrides::default()))
}

/// What one pass is asked to do.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub overrides: Overrides,
    /// Only these entry names (`None` = all).
    pub scope: Option<BTreeSet<String>>,
    /// Entries to leave alone this pass.
    pub hold: BTreeSet<String>,
    /// Native verdicts decided earlier (the daemon keeps them); `None`:
    /// decide now.
    pub native: Option<BTreeMap<String, Native>>,
}

/// Observe and plan without changing anything (for `qus status`).
pub fn survey(
    ctx: &Context,
    overrides: &Overrides,
    scope: Option<BTreeSet<String>>,
) -> Result<Plan> {
    let kernel = kernel_entries(&ctx.binfmt)?;
    let (owned, warning) = ctx.state.load();
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let native = native_now(ctx, &kernel, &owned, None);
    let wanted = observe::wanted(&ctx.config, &native, overrides);
    Ok(plan::plan(
        &wanted,
        &kernel,
        &owned,
        &options(ctx, scope, BTreeSet::new()),
    ))
}

fn options(ctx: &Context, scope: Option<BTreeSet<String>>, hold: BTreeSet<String>) -> Options {
    Options {
        takeover: ctx.config.takeover.value,
        scope,
        hold,
    }
}

/// Result of one reconcile pass.
#[derive(Debug)]
pub struct Pass {
    pub plan: Plan,
    pub outcome: Outcome,
    /// Did this pass mount binfmt_misc?
    pub mounted: bool,
    /// Did this pass turn binfmt_misc's global switch back on?
    pub reenabled: bool,
    /// The global switch after the pass.
    pub enabled_after: bool,
    /// The kernel's entries after the pass (what the daemon compares
    /// binfmt_misc events against, to tell its own writes from others').
    /// Computed from what the pass did, never re-read: a change someone
    /// else makes meanwhile must still look like a change. (Re-reading
    /// lost such a removal; found by the soak test.)
    pub kernel_after: KernelEntries,
    /// The native verdicts this pass used.
    pub native: BTreeMap<String, Native>,
    scope: Option<BTreeSet<String>>,
}

impl Pass {
    fn in_scope(&self, name: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| s.contains(name))
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
        self.plan
            .items
            .iter()
            .filter(|i| {
                self.in_scope(&i.name)
                    && i.wanted.is_some()
                    && i.state != plan::State::Conflict
                    && !failed.contains(i.name.as_str())
            })
            .count()
    }

    /// Items in scope with this state.
    pub fn count(&self, state: plan::State) -> usize {
        self.plan
            .items
            .iter()
            .filter(|i| self.in_scope(&i.name) && i.state == state)
            .count()
    }

    /// One line for people and for sd_notify's STATUS=.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} registered, {} errors",
            self.registered(),
            self.outcome.failed.len()
        );
        for (state, word) in [
            (plan::State::Refused, "refused"),
            (plan::State::Conflict, "conflicts"),
        ] {
            let n = self.count(state);
            if n > 0 {
                s.push_str(&format!(", {n} {word}"));
            }
        }
        s
    }
}

/// Lock, mount if needed and allowed, observe, plan, apply, save records.
pub fn reconcile(
    ctx: &Context,
    overrides: &Overrides,
    scope: Option<BTreeSet<String>>,
) -> Result<Pass> {
    reconcile_with(
        ctx,
        &Request {
            overrides: overrides.clone(),
            scope,
            ..Request::default()
        },
    )
}

/// [`reconcile`] with every knob.
pub fn reconcile_with(ctx: &Context, request: &Request) -> Result<Pass> {
    let overrides = &request.overrides;
    let scope = request.scope.clone();
    let _lock = ctx.state.lock().context("taking the state-dir lock")?;
    let mounted = ctx.binfmt.ensure_mounted(ctx.config.binfmt_mount.value)?;
    if mounted {
        tracing::info!("mounted binfmt_misc at {}", ctx.binfmt.root().display());
    }
    let mut reenabled = false;
    let enabled_before = ctx.binfmt.enabled().unwrap_or(true);
    if !enabled_before {
        if ctx.config.binfmt_enable.value {
            ctx.binfmt
                .set_all_enabled(true)
                .context("turning binfmt_misc back on")?;
            tracing::info!("binfmt_misc was disabled globally; enabled it (binfmt.enable = true)");
            reenabled = true;
        } else {
            tracing::warn!("binfmt_misc is disabled globally; no entry works until it is enabled (binfmt.enable = false)");
        }
    }
    let kernel = kernel_entries(&ctx.binfmt)?;
    let (mut owned, warning) = ctx.state.load();
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let native = native_now(ctx, &kernel, &owned, request.native.as_ref());
    let wanted = observe::wanted(&ctx.config, &native, overrides);
    for want in &wanted.items {
        if let Err(plan::Skip::Refused(why)) = &want.want {
            tracing::warn!("refused {}: {why}", want.name);
        }
    }
    let plan = plan::plan(
        &wanted,
        &kernel,
        &owned,
        &options(ctx, scope.clone(), request.hold.clone()),
    );
    let outcome = apply::apply(&plan, &ctx.binfmt, &mut owned);
    if outcome.records_changed {
        if let Err(e) = ctx.state.save(&owned) {
            tracing::warn!("cannot save ownership records: {e}; the kernel's view still holds");
        }
    }
    let kernel_after = expected_after(&kernel, &outcome.done);
    Ok(Pass {
        plan,
        outcome,
        mounted,
        reenabled,
        enabled_after: enabled_before || reenabled,
        kernel_after,
        native,
        scope,
    })
}

/// Remove owned entries: those qus recorded, and configured ones that are
/// identical to what qus would register. `names = None` means all of them.
pub fn unregister(ctx: &Context, names: Option<&BTreeSet<String>>) -> Result<Outcome> {
    let _lock = ctx.state.lock().context("taking the state-dir lock")?;
    let kernel = kernel_entries(&ctx.binfmt)?;
    let (mut owned, warning) = ctx.state.load();
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let native = native_now(ctx, &kernel, &owned, None);
    let wanted = observe::wanted(&ctx.config, &native, &Overrides::default());
    let plan_now = plan::plan(
        &wanted,
        &kernel,
        &owned,
        &options(ctx, None, BTreeSet::new()),
    );
    let mut items = Vec::new();
    for item in plan_now.items {
        if names.is_some_and(|n| !n.contains(&item.name)) {
            continue;
        }
        let Some(k) = &item.kernel else {
            if owned.contains_key(&item.name) {
                items.push((
                    item.name.clone(),
                    Action::Forget {
                        name: item.name.clone(),
                    },
                ));
            }
            continue;
        };
        let recorded = owned
            .get(&item.name)
            .is_some_and(|o| o.spec.equivalent(&k.spec));
        let configured_same = item.wanted.as_ref().is_some_and(|w| w.equivalent(&k.spec));
        if recorded || configured_same {
            items.push((
                item.name.clone(),
                Action::Unregister {
                    name: item.name.clone(),
                    reason: "qus unregister".into(),
                },
            ));
        } else if names.is_some() {
            tracing::warn!("{} is not owned by qus; left alone", item.name);
        }
    }
    let plan = Plan {
        items: items
            .into_iter()
            .map(|(name, action)| plan::Item {
                name,
                arch: None,
                state: plan::State::Registered,
                detail: None,
                wanted: None,
                kernel: None,
                owned: true,
                actions: vec![action],
            })
            .collect(),
    };
    let outcome = apply::apply(&plan, &ctx.binfmt, &mut owned);
    if outcome.records_changed {
        if let Err(e) = ctx.state.save(&owned) {
            tracing::warn!("cannot save ownership records: {e}");
        }
    }
    Ok(outcome)
}
