//! Observe: turn configuration + the files on disk into what qus wants
//! registered, entry by entry, with the reason when an entry is not wanted.
//! This is the only place that looks for emulators and checks them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::arch::{self, Arch};
use crate::binfmt::{EntrySpec, Flags, Matcher};
use crate::config::Config;
use crate::plan::{Skip, Want, Wanted};
use crate::safety;

/// Identity of an interpreter file: with `F` the kernel keeps the file it
/// opened at registration, so a change of any of these means an upgrade
/// that only a re-registration makes the kernel see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl Identity {
    /// Identity of the file a path resolves to (symlinks followed).
    pub fn of(path: &Path) -> std::io::Result<Identity> {
        let m = std::fs::metadata(path)?;
        Ok(Identity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// Facts about the host that decide what is native.
#[derive(Debug, Clone)]
pub struct Host {
    /// Kernel machine name (`uname -m`) or the override.
    pub machine: String,
    pub family: String,
}

impl Host {
    /// The running host, or `machine` when given (for tests and for
    /// preparing configuration for another host).
    pub fn detect(machine: Option<&str>) -> Host {
        let machine = machine.map_or_else(arch::kernel_machine, str::to_string);
        Host {
            family: arch::host_family(&machine),
            machine,
        }
    }
}

/// Does the host run an arch itself? Decided by running the arch's probe
/// when no binfmt_misc entry can catch it (an aarch64 kernel without
/// AArch32, or x86_64 booted with `ia32_emulation=0`, fails the family
/// guess); otherwise by the family rule of `qemu-binfmt-conf.sh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Native {
    Yes(String),
    No(String),
}

/// Native verdicts for the arches of the host's family (as configured or
/// overridden) and of the running kernel's own family. Other arches are
/// foreign without asking.
pub fn native_verdicts(
    host: &Host,
    kernel: &crate::binfmt::KernelEntries,
    owned: &std::collections::BTreeMap<String, crate::plan::Owned>,
    binfmt_enabled: bool,
) -> std::collections::BTreeMap<String, Native> {
    let real_family = arch::host_family(&arch::kernel_machine());
    let mut verdicts = std::collections::BTreeMap::new();
    for a in arch::ARCHES {
        if a.family != host.family && a.family != real_family {
            continue;
        }
        let family_rule = || {
            if a.family == host.family {
                Native::Yes(format!(
                    "host {} runs {} natively (family rule)",
                    host.machine, a.name
                ))
            } else {
                Native::No(format!("not of the {} family", host.family))
            }
        };
        let verdict = match crate::probe::find(a.name) {
            None => family_rule(),
            Some(probe) => {
                let catcher = kernel.iter().find(|(_, e)| {
                    binfmt_enabled && e.enabled && e.spec.matcher.catches(probe.program)
                });
                match catcher {
                    Some((name, _)) if owned.contains_key(name) => Native::No(format!(
                        "{name}, registered by qus, runs it: the host could not"
                    )),
                    Some(_) => family_rule(),
                    None => match crate::probe::run(probe, std::time::Duration::from_secs(5)) {
                        crate::probe::RunResult::Pass => {
                            Native::Yes(format!("the {} probe ran natively", a.name))
                        }
                        crate::probe::RunResult::ExecFormatError => Native::No(format!(
                            "the host cannot run {} binaries (exec format error)",
                            a.name
                        )),
                        // Only the kernel's refusal proves the host cannot run
                        // it; a crash may be our own sandbox (a seccomp filter
                        // of a hardened service), so the family rule decides.
                        crate::probe::RunResult::Fail(why) => {
                            tracing::warn!(
                                "the {} probe failed natively ({why}); deciding by the family rule",
                                a.name
                            );
                            family_rule()
                        }
                    },
                }
            }
        };
        verdicts.insert(a.name.to_string(), verdict);
    }
    verdicts
}

/// Run-time adjustments from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `qemu.targets` for this run (`qus register ARCH…`).
    pub targets: Option<Vec<String>>,
    /// Replaces the flags of every qemu entry (`--flags`).
    pub flags: Option<Flags>,
}

/// Find the emulator for an arch: the per-arch override, else the first
/// `binary_names` match in `search_path` order.
pub fn find_emulator(config: &Config, arch: &Arch) -> Option<PathBuf> {
    if let Some(path) = config
        .arch
        .get(arch.name)
        .and_then(|o| o.interpreter.as_ref())
    {
        return Some(path.value.clone());
    }
    for dir in &config.search_path.value {
        for template in &config.binary_names.value {
            let candidate = dir.join(template.replace("{arch}", arch.emulator));
            if candidate.exists() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Build the wanted set: every arch of the table and every custom entry.
pub fn wanted(
    config: &Config,
    native: &std::collections::BTreeMap<String, Native>,
    overrides: &Overrides,
) -> Wanted {
    let mut items = Vec::new();
    let dirs = safety::DirCache::default();
    for arch in arch::ARCHES {
        items.push(want_arch(config, native, overrides, arch, &dirs));
    }
    for (name, entry) in &config.entries {
        let want = if !entry.enabled {
            Err(Skip::Excluded(format!("disabled in {}", entry.source)))
        } else {
            checked(entry.spec.clone(), &dirs)
        };
        items.push(Want {
            name: name.clone(),
            arch: None,
            want,
        });
    }
    Wanted { items }
}

fn want_arch(
    config: &Config,
    native: &std::collections::BTreeMap<String, Native>,
    overrides: &Overrides,
    arch: &Arch,
    dirs: &safety::DirCache,
) -> Want {
    let name = config.entry_name(arch.name);
    let over = config.arch.get(arch.name);
    let forced = over.and_then(|o| o.enabled.as_ref());
    let targeted = match &overrides.targets {
        Some(list) => list.iter().any(|t| t == arch.name),
        None => config
            .targets
            .value
            .iter()
            .any(|t| t == "all" || t == arch.name),
    };
    let excluded = config.exclude.value.iter().any(|e| e == arch.name);
    let skip = match forced {
        Some(e) if !e.value => Some(Skip::Excluded(format!("enabled = false ({})", e.source))),
        Some(_) => None,
        None if excluded => Some(Skip::Excluded(format!(
            "in qemu.exclude ({})",
            config.exclude.source
        ))),
        None if !targeted => Some(Skip::Excluded("not in qemu.targets".into())),
        None => match native.get(arch.name) {
            Some(Native::Yes(why)) => Some(Skip::Native(why.clone())),
            _ => None,
        },
    };
    let want = match skip {
        Some(skip) => Err(skip),
        None => match find_emulator(config, arch) {
            None => Err(Skip::NoInterpreter(format!(
                "no {} in {}",
                config
                    .binary_names
                    .value
                    .iter()
                    .map(|t| t.replace("{arch}", arch.emulator))
                    .collect::<Vec<_>>()
                    .join(" or "),
                config
                    .search_path
                    .value
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ))),
            Some(interpreter) => {
                let flags = overrides
                    .flags
                    .or_else(|| over.and_then(|o| o.flags.as_ref()).map(|f| f.value))
                    .unwrap_or(config.flags.value);
                checked(
                    EntrySpec {
                        matcher: Matcher::Magic {
                            offset: 0,
                            magic: arch.magic.to_vec(),
                            mask: Some(arch.mask.to_vec()),
                        },
                        interpreter,
                        flags,
                    },
                    dirs,
                )
            }
        },
    };
    Want {
        name,
        arch: Some(arch.name.to_string()),
        want,
    }
}

/// Apply the interpreter safety rules and take the file's identity.
fn checked(spec: EntrySpec, dirs: &safety::DirCache) -> Result<crate::plan::Desired, Skip> {
    if !spec.interpreter.exists() {
        return Err(Skip::NoInterpreter(format!(
            "{} does not exist",
            spec.interpreter.display()
        )));
    }
    let resolved = safety::check_interpreter_cached(&spec.interpreter, dirs)
        .map_err(|r| Skip::Refused(r.0))?;
    let identity = Identity::of(&resolved).map_err(|e| Skip::Refused(e.to_string()))?;
    Ok(crate::plan::Desired { spec, identity })
}
