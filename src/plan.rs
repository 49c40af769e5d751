//! The reconcile planner: the heart of qus, and pure.
//!
//! Inputs: what qus wants (per entry: a spec + interpreter identity, or why
//! not), what the kernel has, and which entries qus registered earlier
//! (the ownership records). Output: per entry, its state and the minimal
//! actions that make the kernel right. Planning the result of applying a
//! plan yields no actions, which is why a second `qus register` and a
//! restarted `qusd` write nothing.
//!
//! Rules, in short:
//! - wanted and absent → register; wanted and identical → nothing (adopt it
//!   if it was someone else's; enable it if disabled);
//! - wanted and different → replace when qus registered it, or when
//!   `takeover` allows; otherwise report `conflict` and leave it;
//! - wanted with `F` and the interpreter file changed since qus registered
//!   it → replace, so the kernel drops the old open file;
//! - not wanted (excluded, native, no/refused interpreter, gone from the
//!   config) → unregister only what qus registered and nobody changed since;
//! - anything qus did not register and does not name is never touched.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::binfmt::{EntrySpec, KernelEntries, KernelEntry};
use crate::observe::Identity;

/// A registration qus wants, with the identity of its interpreter file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub spec: EntrySpec,
    pub identity: Identity,
}

/// Why an entry is not wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not targeted, excluded, or disabled in configuration.
    Excluded(String),
    /// The host runs this arch itself.
    Native(String),
    /// No emulator file found.
    NoInterpreter(String),
    /// An emulator was found but fails the safety rules.
    Refused(String),
}

/// One entry qus has an opinion about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub name: String,
    /// The table arch for qemu entries; `None` for custom entries.
    pub arch: Option<String>,
    pub want: Result<Desired, Skip>,
}

/// Everything qus has an opinion about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub items: Vec<Want>,
}

/// What qus recorded when it registered (or adopted) an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub arch: Option<String>,
    pub spec: EntrySpec,
    pub identity: Option<Identity>,
}

/// Planner options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Replace same-named entries qus did not register.
    pub takeover: bool,
    /// Only act on these entry names (`qus register ARCH…`); `None` = all.
    pub scope: Option<BTreeSet<String>>,
    /// Leave these alone this time (their emulator file is still being
    /// written; the daemon acts once it is complete).
    pub hold: BTreeSet<String>,
}

/// A registration to make, and what to record about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub arch: Option<String>,
    pub spec: EntrySpec,
    pub identity: Identity,
}

/// One step of a plan. Only the first four write to binfmt_misc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Register(Target),
    /// Remove + register: the spec changed, or the interpreter file did (F).
    Replace {
        target: Target,
        reason: String,
    },
    Enable {
        name: String,
    },
    Unregister {
        name: String,
        reason: String,
    },
    /// Record ownership (adopt an identical entry, or note a new identity).
    Record(Target),
    /// Drop an ownership record for an entry that is gone or no longer ours.
    Forget {
        name: String,
    },
}

impl Action {
    /// Does this action write to binfmt_misc?
    pub fn writes_kernel(&self) -> bool {
        matches!(
            self,
            Action::Register(_)
                | Action::Replace { .. }
                | Action::Enable { .. }
                | Action::Unregister { .. }
        )
    }

    /// Order of application: free names first, then fill them.
    fn rank(&self) -> u8 {
        match self {
            Action::Unregister { .. } => 0,
            Action::Replace { .. } => 1,
            Action::Register(_) => 2,
            Action::Enable { .. } => 3,
            Action::Record(_) => 4,
            Action::Forget { .. } => 5,
        }
    }
}

/// The state of one entry, as `qus status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// In the kernel, enabled, as wanted.
    Registered,
    /// Wanted, not in the kernel.
    Missing,
    /// In the kernel as wanted, but disabled.
    Disabled,
    /// In the kernel but outdated: the spec or the interpreter file changed.
    Stale,
    /// Same name, different entry, not qus's, and `takeover = false`.
    Conflict,
    NoInterpreter,
    /// Found an emulator that fails the safety rules.
    Refused,
    Excluded,
    Native,
    /// Registered by qus earlier, no longer configured.
    Orphaned,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Registered => "registered",
            State::Missing => "missing",
            State::Disabled => "disabled",
            State::Stale => "stale",
            State::Conflict => "conflict",
            State::NoInterpreter => "no-interpreter",
            State::Refused => "refused",
            State::Excluded => "excluded",
            State::Native => "native",
            State::Orphaned => "orphaned",
        }
    }
}

/// The verdict on one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    pub arch: Option<String>,
    pub state: State,
    /// Why, in words (skip reasons, conflict details).
    pub detail: Option<String>,
    /// What qus wants registered, if anything.
    pub wanted: Option<EntrySpec>,
    /// What the kernel has under this name.
    pub kernel: Option<KernelEntry>,
    /// Did qus register (or adopt) it?
    pub owned: bool,
    pub actions: Vec<Action>,
}

/// The whole plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub items: Vec<Item>,
}

impl Plan {
    /// Every action, in the order it must be applied.
    pub fn actions(&self) -> Vec<&Action> {
        let mut all: Vec<&Action> = self.items.iter().flat_map(|i| &i.actions).collect();
        all.sort_by_key(|a| a.rank());
        all
    }

    /// How many writes to binfmt_misc applying this plan takes.
    pub fn kernel_writes(&self) -> usize {
        self.actions().iter().filter(|a| a.writes_kernel()).count()
    }
}

/// Plan: wanted + kernel + ownership records → states and actions.
pub fn plan(
    wanted: &Wanted,
    kernel: &KernelEntries,
    owned: &BTreeMap<String, Owned>,
    options: &Options,
) -> Plan {
    let mut items = Vec::new();
    let mut seen = BTreeSet::new();
    for want in &wanted.items {
        seen.insert(want.name.clone());
        let mut item = judge(want, kernel.get(&want.name), owned.get(&want.name), options);
        if !in_scope(options, &want.name) {
            item.actions.clear();
        }
        items.push(item);
    }
    // Entries qus registered before and no longer names at all.
    for (name, record) in owned {
        if seen.contains(name) {
            continue;
        }
        let k = kernel.get(name);
        let mut actions = Vec::new();
        match k {
            Some(k) if k.spec.equivalent(&record.spec) => actions.push(Action::Unregister {
                name: name.clone(),
                reason: "no longer configured".into(),
            }),
            _ => actions.push(Action::Forget { name: name.clone() }),
        }
        if !in_scope(options, name) {
            actions.clear();
        }
        items.push(Item {
            name: name.clone(),
            arch: record.arch.clone(),
            state: State::Orphaned,
            detail: Some("registered by qus, no longer configured".into()),
            wanted: None,
            kernel: k.cloned(),
            owned: true,
            actions,
        });
    }
    Plan { items }
}

fn in_scope(options: &Options, name: &str) -> bool {
    options.scope.as_ref().is_none_or(|s| s.contains(name)) && !options.hold.contains(name)
}

fn judge(
    want: &Want,
    kernel: Option<&KernelEntry>,
    record: Option<&Owned>,
    options: &Options,
) -> Item {
    let name = &want.name;
    let mut item = Item {
        name: name.clone(),
        arch: want.arch.clone(),
        state: State::Missing,
        detail: None,
        wanted: None,
        kernel: kernel.cloned(),
        owned: record.is_some(),
        actions: Vec::new(),
    };
    // Did qus register what the kernel holds now (nobody changed it since)?
    let ours_unchanged = match (kernel, record) {
        (Some(k), Some(r)) => k.spec.equivalent(&r.spec),
        _ => false,
    };
    let desired = match &want.want {
        Ok(d) => d,
        Err(skip) => {
            let (state, why) = match skip {
                Skip::Excluded(w) => (State::Excluded, w),
                Skip::Native(w) => (State::Native, w),
                Skip::NoInterpreter(w) => (State::NoInterpreter, w),
                Skip::Refused(w) => (State::Refused, w),
            };
            item.state = state;
            item.detail = Some(why.clone());
            if ours_unchanged {
                item.actions.push(Action::Unregister {
                    name: name.clone(),
                    reason: format!("{}: {why}", state.as_str()),
                });
            } else if record.is_some() {
                item.actions.push(Action::Forget { name: name.clone() });
            }
            return item;
        }
    };
    item.wanted = Some(desired.spec.clone());
    let target = Target {
        name: name.clone(),
        arch: want.arch.clone(),
        spec: desired.spec.clone(),
        identity: desired.identity,
    };
    let Some(k) = kernel else {
        item.state = State::Missing;
        item.actions.push(Action::Register(target));
        return item;
    };
    if k.spec.equivalent(&desired.spec) {
        let file_changed = record
            .and_then(|r| r.identity)
            .is_some_and(|id| id != desired.identity);
        let record_current = record.is_some_and(|r| {
            r.spec.equivalent(&desired.spec) && r.identity == Some(desired.identity)
        });
        if file_changed && desired.spec.flags.fix_binary && ours_unchanged {
            item.state = State::Stale;
            item.detail =
                Some("interpreter file changed since registration (F keeps the old one)".into());
            item.actions.push(Action::Replace {
                target,
                reason: "interpreter file changed on disk".into(),
            });
            return item;
        }
        item.state = if k.enabled {
            State::Registered
        } else {
            State::Disabled
        };
        if !k.enabled {
            item.actions.push(Action::Enable { name: name.clone() });
        }
        if !record_current {
            item.actions.push(Action::Record(target));
        }
        item.owned = true;
        return item;
    }
    // Same name, different registration.
    if ours_unchanged || options.takeover {
        item.state = State::Stale;
        let reason = if ours_unchanged {
            "configuration or emulator changed"
        } else {
            "takeover of a different same-named entry"
        };
        item.detail = Some(reason.into());
        item.actions.push(Action::Replace {
            target,
            reason: reason.into(),
        });
    } else {
        item.state = State::Conflict;
        item.detail = Some(format!(
            "a different entry named {name} exists (interpreter {}); takeover = false",
            k.spec.interpreter.display()
        ));
        if record.is_some() {
            item.actions.push(Action::Forget { name: name.clone() });
        }
        item.owned = false;
    }
    item
}

#[cfg(test)]
mod tests;
