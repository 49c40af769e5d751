//! Before any entry: what makes binfmt_misc usable. Mounting it, turning
//! its global switch back on and putting back other tools' entries a
//! flush wiped are steps of the plan like any registration: applied by
//! apply, counted, logged and shown by the dry run. Pure: facts and rules
//! in, actions (and notes for the log) out.

use std::path::PathBuf;

use crate::binfmt::KernelEntry;

use super::Action;

/// The hold that stands for binfmt_misc's global switch (not an entry
/// name: those cannot hold a `/`). qusd holds it once it gave up switching
/// binfmt_misc back on, as it holds an entry it gave up repairing.
pub const SWITCH_HOLD: &str = "binfmt_misc/status";

/// What the configuration allows (`binfmt.mount`, `binfmt.enable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub path: PathBuf,
    /// The instance at `path` is a user namespace's own (see
    /// [`Action::Mount`]).
    pub private: bool,
    pub mount: bool,
    pub enable: bool,
    /// qusd gave up switching it on: someone switched it off again each
    /// time (see [`SWITCH_HOLD`]).
    pub switch_held: bool,
}

/// binfmt_misc's state before anything is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub mounted: bool,
    /// The global switch, when mounted and readable.
    pub enabled: Option<bool>,
}

/// Another tool's entry a flush wiped, with the safety verdict on its
/// interpreter: a flush must not become a way to get a file someone else
/// controls registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flushed {
    pub name: String,
    pub entry: KernelEntry,
    pub refused: Option<String>,
}

/// The preparation: actions in order, and what to tell the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preparation {
    pub actions: Vec<Action>,
    pub notes: Vec<String>,
}

/// Plan the preparation. Unmounted and not allowed to mount is an error:
/// nothing can be registered, and saying so beats failing entry by entry.
pub fn prepare(
    ready: Readiness,
    allowed: &Allowed,
    flushed: &[Flushed],
) -> Result<Preparation, String> {
    let mut p = Preparation::default();
    if !ready.mounted {
        if !allowed.mount {
            return Err(format!(
                "binfmt_misc is not mounted at {} (and binfmt.mount = false)",
                allowed.path.display()
            ));
        }
        p.actions.push(Action::Mount {
            path: allowed.path.clone(),
            private: allowed.private,
        });
    }
    if ready.enabled == Some(false) {
        if allowed.enable && !allowed.switch_held {
            p.actions.push(Action::SwitchOn);
        } else if allowed.enable {
            p.notes.push(
                "binfmt_misc is disabled globally, and qusd gave up switching it back on \
                 (switched off again each time): left off until the configuration changes \
                 or SIGHUP"
                    .into(),
            );
        } else {
            p.notes.push(
                "binfmt_misc is disabled globally; no entry works until it is enabled \
                 (binfmt.enable = false)"
                    .into(),
            );
        }
    }
    for f in flushed {
        match &f.refused {
            Some(why) => p
                .notes
                .push(format!("not restoring {} after the flush: {why}", f.name)),
            None => p.actions.push(Action::RestoreOther {
                name: f.name.clone(),
                entry: f.entry.clone(),
            }),
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::{EntrySpec, Flags, Matcher};

    fn allowed(mount: bool, enable: bool) -> Allowed {
        Allowed {
            path: PathBuf::from("/proc/sys/fs/binfmt_misc"),
            private: false,
            mount,
            enable,
            switch_held: false,
        }
    }

    #[test]
    fn a_held_switch_is_left_off_and_said() {
        let off = Readiness {
            mounted: true,
            enabled: Some(false),
        };
        let held = Allowed {
            switch_held: true,
            ..allowed(true, true)
        };
        let p = prepare(off, &held, &[]).expect("prepared");
        assert!(p.actions.is_empty(), "{p:?}");
        assert!(p.notes[0].contains("gave up switching it back on"), "{p:?}");
        let p = prepare(off, &allowed(true, true), &[]).expect("prepared");
        assert_eq!(p.actions, vec![Action::SwitchOn]);
    }

    fn flushed(name: &str, refused: Option<&str>) -> Flushed {
        Flushed {
            name: name.into(),
            entry: KernelEntry {
                enabled: false,
                spec: EntrySpec {
                    matcher: Matcher::Extension("py".into()),
                    interpreter: PathBuf::from("/usr/bin/python3"),
                    flags: Flags::default(),
                },
            },
            refused: refused.map(String::from),
        }
    }

    #[test]
    fn unmounted_means_mount_first_unless_forbidden() {
        let down = Readiness {
            mounted: false,
            enabled: None,
        };
        let p = prepare(down, &allowed(true, true), &[]).expect("plan");
        assert!(matches!(p.actions.as_slice(), [Action::Mount { .. }]));
        let e = prepare(down, &allowed(false, true), &[]).expect_err("may not mount");
        assert!(e.contains("binfmt.mount = false"), "{e}");
    }

    #[test]
    fn switched_off_means_switch_on_or_a_note() {
        let off = Readiness {
            mounted: true,
            enabled: Some(false),
        };
        let p = prepare(off, &allowed(true, true), &[]).expect("plan");
        assert_eq!(p.actions, vec![Action::SwitchOn]);
        let p = prepare(off, &allowed(true, false), &[]).expect("plan");
        assert!(p.actions.is_empty());
        assert!(p.notes[0].contains("binfmt.enable = false"));
        let on = Readiness {
            mounted: true,
            enabled: Some(true),
        };
        assert_eq!(
            prepare(on, &allowed(true, true), &[]),
            Ok(Preparation::default())
        );
    }

    #[test]
    fn flushed_entries_go_back_as_they_were_unless_refused() {
        let on = Readiness {
            mounted: true,
            enabled: Some(true),
        };
        let all = [
            flushed("python", None),
            flushed("evil", Some("writable by uid 1000")),
        ];
        let p = prepare(on, &allowed(true, true), &all).expect("plan");
        assert_eq!(p.actions.len(), 1);
        let Action::RestoreOther { name, entry } = &p.actions[0] else {
            panic!("{:?}", p.actions);
        };
        assert_eq!(name, "python");
        assert!(!entry.enabled, "put back disabled, as it was");
        assert_eq!(p.actions[0].kernel_writes(), 2, "register + disable");
        assert!(p.notes[0].contains("not restoring evil"));
    }
}
