//! Configuration: drop-in fragments → merged, validated settings.
//!
//! Fragments are `*.toml` files in `/usr/lib/qus.d`, `/run/qus.d` and
//! `/etc/qus.d` (in that order, later wins). A file in a later directory
//! masks the same-named file of an earlier one, and a symlink to `/dev/null`
//! disables it (the `binfmt.d` convention).
//! Files then apply in lexical order of their names; each value remembers
//! the file and line it came from, which is what `qus config` prints and
//! what every error names.
//!
//! `toml` + `serde` are used directly rather than the `config` crate: the
//! latter merges sources into an untyped tree and loses the spans we need
//! for `file:line` errors and per-value sources.

mod custom;
mod fragment;
mod merge;
mod scan;
mod span;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::binfmt::entry::{EntrySpec, Flags};
pub use crate::model::{Others, Takeover};
use merge::Merger;
pub use scan::fragment_files;

/// The default drop-in directories, lowest priority first.
pub const DEFAULT_DIRS: &[&str] = &["/usr/lib/qus.d", "/run/qus.d", "/etc/qus.d"];
const DEFAULT_BINFMT_PATH: &str = "/proc/sys/fs/binfmt_misc";
pub const DEFAULT_STATE_DIR: &str = "/run/qusd";

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File {
        path: PathBuf,
        line: usize,
    },
    /// A command-line option or environment variable, by name.
    Override(String),
    /// A list built up by several drop-ins (each added to it).
    Merged(Vec<Source>),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("built-in default"),
            Source::File { path, line } => write!(f, "{}:{line}", crate::escape::Shown(path)),
            Source::Override(what) => f.write_str(what),
            Source::Merged(parts) => {
                let parts: Vec<String> = parts.iter().map(ToString::to_string).collect();
                f.write_str(&parts.join(" + "))
            }
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    fn default(value: T) -> Sourced<T> {
        Sourced {
            value,
            source: Source::Default,
        }
    }
}

/// A configuration error: which file, which line, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: Option<PathBuf>,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{l}: {}", p.display(), self.message),
            (Some(p), None) => write!(f, "{}: {}", p.display(), self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Per-architecture overrides from `[qemu.arch.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchOverride {
    pub interpreter: Option<Sourced<PathBuf>>,
    pub flags: Option<Sourced<Flags>>,
    pub enabled: Option<Sourced<bool>>,
    /// Register even if the entry would catch the host's own programs.
    pub catch_host_programs: Option<Sourced<bool>>,
    /// Overrides `qemu.others` for this arch.
    pub others: Option<Sourced<Others>>,
    /// Overrides `qemu.allow_dynamic` for this arch.
    pub allow_dynamic: Option<Sourced<bool>>,
}

/// A custom `[entry.NAME]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomEntry {
    pub spec: EntrySpec,
    pub enabled: bool,
    /// Register even if the entry would catch the host's own programs.
    pub catch_host_programs: bool,
    /// The file and line of the last table that defined this entry.
    pub source: Source,
}

/// The effective configuration, every value validated and sourced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub binfmt_path: Sourced<PathBuf>,
    pub binfmt_mount: Sourced<bool>,
    /// Turn binfmt_misc's global switch back on when found off.
    pub binfmt_enable: Sourced<bool>,
    pub search_path: Sourced<Vec<PathBuf>>,
    pub binary_names: Sourced<Vec<String>>,
    /// Arch names; `["all"]` means every foreign arch of the table.
    pub targets: Sourced<Vec<String>>,
    pub exclude: Sourced<Vec<String>>,
    pub flags: Sourced<Flags>,
    pub name_prefix: Sourced<String>,
    pub takeover: Sourced<Takeover>,
    /// What to do when another entry already handles an arch.
    pub others: Sourced<Others>,
    /// Register a dynamically linked emulator under `F` (it then works on
    /// the host only, not in containers or chroots).
    pub allow_dynamic: Sourced<bool>,
    /// Restore other tools' entries when a flush wipes them all at once.
    pub guard_others: Sourced<bool>,
    pub arch: BTreeMap<String, ArchOverride>,
    pub entries: BTreeMap<String, CustomEntry>,
    pub debounce_ms: Sourced<u64>,
    pub unregister_on_stop: Sourced<bool>,
    /// qusd runs each newly registered arch's probe and reports the result.
    pub verify: Sourced<bool>,
    /// The fragments that were applied, in order.
    pub files: Vec<PathBuf>,
    /// Files in the config directories that do not apply, and why.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            binfmt_path: Sourced::default(PathBuf::from(DEFAULT_BINFMT_PATH)),
            binfmt_mount: Sourced::default(true),
            binfmt_enable: Sourced::default(true),
            search_path: Sourced::default(vec!["/usr/bin".into(), "/usr/local/bin".into()]),
            binary_names: Sourced::default(vec!["qemu-{arch}-static".into(), "qemu-{arch}".into()]),
            targets: Sourced::default(vec!["all".into()]),
            exclude: Sourced::default(vec![]),
            flags: Sourced::default(Flags {
                preserve_argv0: true,
                fix_binary: true,
                ..Flags::default()
            }),
            name_prefix: Sourced::default("qemu-".into()),
            takeover: Sourced::default(Takeover::Distro),
            others: Sourced::default(Others::Yield),
            allow_dynamic: Sourced::default(false),
            guard_others: Sourced::default(false),
            arch: BTreeMap::new(),
            entries: BTreeMap::new(),
            debounce_ms: Sourced::default(100),
            unregister_on_stop: Sourced::default(false),
            verify: Sourced::default(false),
            files: vec![],
            skipped: vec![],
        }
    }
}

impl Config {
    /// Is this arch selected by `targets` and not excluded?
    pub fn targets_arch(&self, name: &str) -> bool {
        let targeted = self.targets.value.iter().any(|t| t == "all" || t == name);
        targeted && !self.exclude.value.iter().any(|e| e == name)
    }

    /// The binfmt_misc entry name for an arch.
    pub fn entry_name(&self, arch: &str) -> String {
        format!("{}{arch}", self.name_prefix.value)
    }
}

/// Load, merge and validate the configuration from these directories
/// (the commands always go through [`load_with`]).
#[cfg(test)]
pub fn load(dirs: &[PathBuf]) -> Result<Config, ConfigError> {
    load_with(dirs, &[])
}

/// Load as [`load`] would after dropping `extra` files in (applied after
/// the directories' files): `qus config --check FILE…`.
pub fn load_with(dirs: &[PathBuf], extra: &[PathBuf]) -> Result<Config, ConfigError> {
    load_files(dirs, extra, &[])
}

/// What read-only commands go on with when the configuration does not
/// load: every drop-in but the broken ones (each error kept, file:line),
/// or the built-in configuration when the error is not one file's.
pub fn load_without_broken(dirs: &[PathBuf]) -> (Config, Vec<ConfigError>) {
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut broken: Vec<PathBuf> = Vec::new();
    loop {
        match load_files(dirs, &[], &broken) {
            Ok(config) => return (config, errors),
            Err(e) => {
                let file = e.path.clone().filter(|p| !broken.contains(p));
                errors.push(e);
                match file {
                    Some(p) => broken.push(p),
                    None => return (Config::default(), errors),
                }
            }
        }
    }
}

fn load_files(
    dirs: &[PathBuf],
    extra: &[PathBuf],
    broken: &[PathBuf],
) -> Result<Config, ConfigError> {
    let mut merger = Merger::default();
    let (files, skipped) = scan::fragment_scan(dirs)?;
    for path in files.iter().chain(extra).filter(|p| !broken.contains(p)) {
        let text = if extra.contains(path) {
            std::fs::read_to_string(path).map_err(|e| ConfigError {
                path: Some(path.clone()),
                line: None,
                message: format!("cannot read: {e}"),
            })?
        } else {
            scan::read_fragment(path)?
        };
        merger.apply(path, &text)?;
    }
    let mut config = merger.finish()?;
    config.skipped = skipped;
    Ok(config)
}

/// Parse and apply a single fragment on top of the defaults: for tests and
/// `qus config --check FILE`-style validation.
pub fn load_str(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut merger = Merger::default();
    merger.apply(path, text)?;
    merger.finish()
}

#[cfg(test)]
mod tests;
