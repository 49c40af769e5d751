//! `qus disable ARCH…` / `qus enable ARCH…`: change the configuration, not
//! just the kernel, so qusd keeps the change. Both edit one drop-in that
//! qus manages (`90-qus-cli.toml`) in the administrator's config directory
//! (or, with `--runtime`, in `/run/qus.d`, gone at reboot), then run a
//! pass for those arches so the change takes effect at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;

use super::{arch_names, daemon_note, CommonArgs};
use crate::engine;
use crate::observe::Request;
use crate::plan::{EntryState, Mode};

/// The drop-ins `qus disable`/`enable` manage: two names, so the runtime
/// one is not masked by the persistent one (masking goes by file name).
const MANAGED: &str = "90-qus-cli.toml";
const MANAGED_RUNTIME: &str = "90-qus-cli-runtime.toml";

#[derive(Debug, Args)]
pub struct ToggleArgs {
    /// Arches to disable or enable again.
    #[arg(value_name = "ARCH", required = true, value_delimiter = ',', value_parser = super::values::ArchParser, hide_possible_values = true)]
    pub arches: Vec<String>,
    /// Only until reboot: write to the /run/qus.d drop-in, not /etc/qus.d.
    #[arg(long)]
    pub runtime: bool,
}

/// Which directory holds the managed drop-in.
fn target_dir(common: &CommonArgs, runtime: bool) -> Result<PathBuf> {
    let dirs = common.config_dirs();
    if runtime {
        return dirs
            .iter()
            .find(|d| d.ends_with("run/qus.d"))
            .cloned()
            .with_context(|| {
                "--runtime writes to a run/qus.d config directory, and none is configured"
            });
    }
    dirs.last().cloned().context("no config directory")
}

/// What the managed drop-in says now: per arch, kept on or kept off.
fn settings_in(path: &Path) -> Result<BTreeMap<String, bool>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let config = crate::config::load_str(path, &text)?;
    Ok(config
        .arch
        .iter()
        .filter_map(|(a, o)| o.enabled.as_ref().map(|e| (a.clone(), e.value)))
        .collect())
}

fn write_managed(dir: &Path, file: &str, settings: &BTreeMap<String, bool>) -> Result<PathBuf> {
    let path = dir.join(file);
    if settings.is_empty() {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => return Ok(path),
        }
    }
    let mut text = String::from(
        "# Managed by `qus disable` / `qus enable`: edits here are kept, but\n\
         # the commands rewrite this file.\n",
    );
    for (a, on) in settings {
        text.push_str(&format!("\n[qemu.arch.{a}]\nenabled = {on}\n"));
    }
    crate::dirfd::write_atomic(dir, file, text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Make the config directory if needed, 0755 whatever the umask (a
/// directory others may write would make the whole configuration
/// refused), and lock it for one edit (released when dropped).
fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
    }
    let handle = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    rustix::fs::flock(&handle, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("locking {}", dir.display()))?;
    Ok(handle)
}

/// The configuration after a change of the managed drop-in, or why it
/// no longer loads.
fn system_after(common: &CommonArgs, path: &Path) -> Result<crate::observe::System> {
    common.system().map_err(|e| {
        anyhow::anyhow!(
            "{} written, but the configuration is now invalid: {e:#}",
            path.display()
        )
    })
}

pub fn run(common: &CommonArgs, args: &ToggleArgs, disable: bool) -> Result<ExitCode> {
    let arches = arch_names(&args.arches)?;
    let dir = target_dir(common, args.runtime)?;
    let file = if args.runtime {
        MANAGED_RUNTIME
    } else {
        MANAGED
    };
    // One edit at a time: three `qus disable` at once must not lose two
    // of the three (read, change and write under a lock on the directory).
    let _edit = lock_dir(&dir)?;
    let mut settings = settings_in(&dir.join(file))?;
    for a in &arches {
        if disable {
            settings.insert(a.clone(), false);
        } else {
            settings.remove(a);
        }
    }
    let mut path = write_managed(&dir, file, &settings)?;
    let mut system = system_after(common, &path)?;
    // Enabling a named arch means "keep it registered": one the rest of
    // the configuration leaves out (targets, exclude) is kept on here, so
    // qusd agrees. `enable all` only undoes every `disable`.
    if !disable && !args.arches.iter().any(|a| a == "all") {
        let left_out: Vec<&String> = arches
            .iter()
            .filter(|a| crate::plan::want::left_out(&system.config, a))
            .collect();
        if !left_out.is_empty() {
            for a in left_out {
                settings.insert(a.clone(), true);
            }
            path = write_managed(&dir, file, &settings)?;
            system = system_after(common, &path)?;
        }
    }
    let scope: BTreeSet<String> = arches.iter().map(|a| system.config.entry_name(a)).collect();
    let mode = Mode::Reconcile {
        takeover: system.config.takeover.value,
        scope: Some(scope),
        holds: BTreeSet::new(),
    };
    let pass = engine::run(&system, &Request::default(), mode)?;
    say_states(&pass, if disable { "disabled" } else { "enabled" }, &path);
    if let Some(note) = daemon_note(common) {
        println!("qus: {note} applies it too and keeps it");
    }
    Ok(if pass.applied.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One line per arch of the change: its state after the pass.
fn say_states(pass: &engine::Outcome, word: &str, path: &std::path::Path) {
    for item in pass
        .plan
        .items
        .iter()
        .filter(|i| pass.mode.in_scope(&i.name))
    {
        // The plan's state is the kernel's before this pass: say what it
        // is after (a registration just made is no longer "missing").
        let failed = pass
            .applied
            .failed
            .iter()
            .any(|(a, _)| a.entry() == item.name);
        let now = match item.state {
            EntryState::Missing | EntryState::Stale | EntryState::Disabled if !failed => {
                "registered"
            }
            state => state.as_str(),
        };
        println!(
            "qus: {word} {} in {}: now {now}{}",
            item.arch.as_deref().unwrap_or(&item.name),
            path.display(),
            item.detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
    }
}
