//! The steps a plan is made of, and what each does to binfmt_misc. apply
//! carries them out, the dry run prints them, and [`kernel_after`]
//! simulates them: all three read the same definitions here.

use std::path::PathBuf;

use crate::binfmt::{EntrySpec, KernelEntries, KernelEntry};
use crate::model::{Identity, Owned};

/// A registration to make, and what to record about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub arch: Option<String>,
    pub spec: EntrySpec,
    pub identity: Identity,
    /// The other tool's entry this one replaced, to put back on unregister.
    pub replaced: Option<EntrySpec>,
}

impl Target {
    /// The ownership record for this registration once it is made.
    pub fn owned(&self) -> Owned {
        Owned {
            arch: self.arch.clone(),
            spec: self.spec.clone(),
            identity: Some(self.identity),
            replaced: self.replaced.clone(),
        }
    }
}

/// One step of a plan. All but `Record` and `Forget` write to
/// binfmt_misc (see [`Action::kernel_writes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Mount binfmt_misc where the configuration says it is.
    Mount {
        path: PathBuf,
        /// A user namespace's own instance (not the host's): its entries
        /// work for that namespace's processes and vanish with it.
        private: bool,
    },
    /// Turn binfmt_misc's global switch back on.
    SwitchOn,
    /// Put back another tool's entry, exactly as it was (enabled or not),
    /// after a flush wiped it (`guard.others`).
    RestoreOther {
        name: String,
        entry: KernelEntry,
    },
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
    /// Put back the entry qus replaced when it took the name over.
    Restore {
        name: String,
        spec: EntrySpec,
    },
    /// Record ownership (adopt an identical entry, or note a new identity).
    Record(Target),
    /// Drop an ownership record for an entry that is gone or no longer ours.
    Forget {
        name: String,
    },
}

impl Action {
    /// How many writes to binfmt_misc this action takes (a replace is a
    /// removal and a registration; a disabled entry put back is a
    /// registration and a disable). What apply counts and the dry run
    /// announces.
    pub fn kernel_writes(&self) -> usize {
        match self {
            Action::Replace { .. } => 2,
            Action::RestoreOther { entry, .. } => 1 + usize::from(!entry.enabled),
            Action::Mount { .. }
            | Action::SwitchOn
            | Action::Register(_)
            | Action::Enable { .. }
            | Action::Unregister { .. }
            | Action::Restore { .. } => 1,
            Action::Record(_) | Action::Forget { .. } => 0,
        }
    }

    /// Order of application: binfmt_misc usable first, then free names,
    /// then fill them.
    pub(super) fn rank(&self) -> u8 {
        match self {
            Action::Mount { .. } => 0,
            Action::SwitchOn => 1,
            Action::RestoreOther { .. } => 2,
            Action::Unregister { .. } => 3,
            Action::Restore { .. } => 4,
            Action::Replace { .. } => 5,
            Action::Register(_) => 6,
            Action::Enable { .. } => 7,
            Action::Record(_) => 8,
            Action::Forget { .. } => 9,
        }
    }

    /// The entry an action is about (a journal field; empty for the
    /// instance-wide ones).
    pub fn entry(&self) -> &str {
        match self {
            Action::Register(t) | Action::Replace { target: t, .. } | Action::Record(t) => &t.name,
            Action::Enable { name }
            | Action::Unregister { name, .. }
            | Action::Restore { name, .. }
            | Action::RestoreOther { name, .. }
            | Action::Forget { name } => name,
            Action::Mount { .. } | Action::SwitchOn => "",
        }
    }

    /// The action's word, as logs, the dry run and JSON show it.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Mount { .. } => "mount",
            Action::SwitchOn => "switch-on",
            Action::RestoreOther { .. } => "restore-other",
            Action::Register(_) => "register",
            Action::Replace { .. } => "replace",
            Action::Enable { .. } => "enable",
            Action::Unregister { .. } => "remove",
            Action::Restore { .. } => "restore",
            Action::Record(_) => "record",
            Action::Forget { .. } => "forget",
        }
    }

    /// Short description: "register qemu-aarch64 (/usr/bin/…)".
    pub fn describe(&self) -> String {
        let verb = self.verb();
        match self {
            Action::Mount { path, .. } => format!("mount binfmt_misc at {}", path.display()),
            Action::SwitchOn => "switch binfmt_misc on (its status file)".into(),
            Action::Register(t) | Action::Replace { target: t, .. } => {
                format!("{verb} {} ({})", t.name, t.spec.interpreter.display())
            }
            Action::RestoreOther { name, entry } => format!(
                "restore {name} ({}), another tool's entry a flush wiped",
                entry.spec.interpreter.display()
            ),
            Action::Restore { name, spec } => {
                format!("{verb} {name} ({})", spec.interpreter.display())
            }
            Action::Unregister { name, reason } => format!("{verb} {name} ({reason})"),
            Action::Enable { name } | Action::Forget { name } => format!("{verb} {name}"),
            Action::Record(t) => format!("{verb} {} as owned", t.name),
        }
    }
}

/// What binfmt_misc holds once `done` was applied to `before` (pure: the
/// daemon compares later events against it, and tests simulate with it).
pub fn kernel_after(before: &KernelEntries, done: &[Action]) -> KernelEntries {
    let mut k = before.clone();
    for action in done {
        match action {
            Action::Register(t) | Action::Replace { target: t, .. } => {
                k.insert(
                    t.name.clone(),
                    KernelEntry {
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
            Action::Restore { name, spec } => {
                k.insert(
                    name.clone(),
                    KernelEntry {
                        enabled: true,
                        spec: spec.clone(),
                    },
                );
            }
            Action::RestoreOther { name, entry } => {
                k.insert(name.clone(), entry.clone());
            }
            Action::Mount { .. } | Action::SwitchOn | Action::Record(_) | Action::Forget { .. } => {
            }
        }
    }
    k
}
