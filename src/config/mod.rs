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

mod fragment;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::arch;
use crate::binfmt::entry::{validate_interpreter, validate_name, EntrySpec, Flags, Matcher};
use crate::escape;
use fragment::{ArchFragment, EntryFragment, Fragment};

/// The default drop-in directories, lowest priority first.
pub const DEFAULT_DIRS: &[&str] = &["/usr/lib/qus.d", "/run/qus.d", "/etc/qus.d"];
pub const DEFAULT_BINFMT_PATH: &str = "/proc/sys/fs/binfmt_misc";
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
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("built-in default"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Override(what) => f.write_str(what),
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
}

/// A custom `[entry.NAME]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomEntry {
    pub spec: EntrySpec,
    pub enabled: bool,
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
    pub takeover: Sourced<bool>,
    pub arch: BTreeMap<String, ArchOverride>,
    pub entries: BTreeMap<String, CustomEntry>,
    pub debounce_ms: Sourced<u64>,
    pub unregister_on_stop: Sourced<bool>,
    /// qusd runs each newly registered arch's probe and reports the result.
    pub verify: Sourced<bool>,
    /// The fragments that were applied, in order.
    pub files: Vec<PathBuf>,
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
            takeover: Sourced::default(true),
            arch: BTreeMap::new(),
            entries: BTreeMap::new(),
            debounce_ms: Sourced::default(100),
            unregister_on_stop: Sourced::default(false),
            verify: Sourced::default(false),
            files: vec![],
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

/// The drop-in files that apply, in the order they apply.
///
/// Written here rather than taken from `liboverdrop`: that crate skips
/// fragments that are symlinks to regular files, which is exactly how a
/// Kubernetes ConfigMap volume presents its files (`NAME -> ..data/NAME`).
pub fn fragment_files(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut by_name: BTreeMap<std::ffi::OsString, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ConfigError {
                    path: Some(dir.clone()),
                    line: None,
                    message: format!("cannot read config directory: {e}"),
                })
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let text = name.to_string_lossy();
            if text.starts_with('.') || !text.ends_with(".toml") {
                continue;
            }
            let path = entry.path();
            // Follows symlinks: a link to /dev/null masks, a link to a
            // regular file (ConfigMap) counts as that file.
            match std::fs::canonicalize(&path) {
                Ok(target) if target == Path::new("/dev/null") => {
                    by_name.remove(&name);
                }
                Ok(target) if target.is_file() => {
                    by_name.insert(name, path);
                }
                // Dangling link or not a file: nothing to apply, and
                // nothing masked either.
                _ => {}
            }
        }
    }
    Ok(by_name.into_values().collect())
}

/// Load, merge and validate the configuration from these directories.
pub fn load(dirs: &[PathBuf]) -> Result<Config, ConfigError> {
    let mut merger = Merger::default();
    for path in fragment_files(dirs)? {
        check_file_owner(&path)?;
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
            path: Some(path.clone()),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        merger.apply(&path, &text)?;
    }
    merger.finish()
}

/// Parse and apply a single fragment on top of the defaults: for tests and
/// `qus config --check FILE`-style validation.
pub fn load_str(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut merger = Merger::default();
    merger.apply(path, text)?;
    merger.finish()
}

/// Config files steer what runs as root: refuse ones that a non-root user
/// could have written. Files owned by the overflow uid (the host's root
/// seen from a user namespace) count as root's.
fn check_file_owner(path: &Path) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| ConfigError {
        path: Some(path.to_path_buf()),
        line: None,
        message: format!("cannot stat: {e}"),
    })?;
    let fail = |message: String| {
        Err(ConfigError {
            path: Some(path.to_path_buf()),
            line: None,
            message,
        })
    };
    if !crate::safety::trusted_owner(meta.uid()) {
        return fail(format!(
            "refused: owned by uid {}, not root (a non-root user could change what runs as root)",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return fail(format!(
            "refused: writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Raw `[entry.NAME]` fields merged across files, validated at the end.
#[derive(Default)]
struct RawEntry {
    kind: Option<Sourced<String>>,
    offset: Option<Sourced<u32>>,
    magic: Option<Sourced<String>>,
    mask: Option<Sourced<String>>,
    extension: Option<Sourced<String>>,
    interpreter: Option<Sourced<String>>,
    flags: Option<Sourced<String>>,
    enabled: Option<Sourced<bool>>,
    source: Option<Source>,
}

#[derive(Default)]
struct Merger {
    config: Config,
    entries: BTreeMap<String, RawEntry>,
}

/// One file being applied: turns spans into lines.
struct FileCtx<'a> {
    path: &'a Path,
    /// Byte offsets where lines start, for a binary search per span
    /// (counting newlines per value was quadratic in the file's size).
    line_starts: Vec<usize>,
}

impl<'a> FileCtx<'a> {
    fn new(path: &'a Path, text: &str) -> FileCtx<'a> {
        let line_starts = std::iter::once(0)
            .chain(
                text.bytes()
                    .enumerate()
                    .filter(|(_, b)| *b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        FileCtx { path, line_starts }
    }

    fn line(&self, span: Range<usize>) -> usize {
        match self.line_starts.binary_search(&span.start) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    fn source(&self, span: Range<usize>) -> Source {
        Source::File {
            path: self.path.to_path_buf(),
            line: self.line(span),
        }
    }

    fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: Some(self.path.to_path_buf()),
            line: span.map(|s| self.line(s)),
            message: message.into(),
        }
    }

    fn sourced<T>(&self, v: Spanned<T>) -> Sourced<T> {
        let span = v.span();
        Sourced {
            value: v.into_inner(),
            source: self.source(span),
        }
    }

    fn flags(&self, v: Spanned<String>, what: &str) -> Result<Sourced<Flags>, ConfigError> {
        let span = v.span();
        let flags = Flags::parse(v.get_ref())
            .map_err(|e| self.error(Some(span.clone()), format!("{what}: {e}")))?;
        Ok(Sourced {
            value: flags,
            source: self.source(span),
        })
    }

    fn arch_names(
        &self,
        v: Spanned<Vec<Spanned<String>>>,
        key: &str,
        allow_all: bool,
    ) -> Result<Sourced<Vec<String>>, ConfigError> {
        let span = v.span();
        let mut names = vec![];
        for name in v.into_inner() {
            let ok = (allow_all && name.get_ref() == "all") || arch::find(name.get_ref()).is_some();
            if !ok {
                return Err(self.error(
                    Some(name.span()),
                    format!(
                        "qemu.{key}: unknown arch {:?} (see `qus arches`)",
                        name.get_ref()
                    ),
                ));
            }
            names.push(name.into_inner());
        }
        Ok(Sourced {
            value: names,
            source: self.source(span),
        })
    }
}

impl Merger {
    fn apply(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let ctx = FileCtx::new(path, text);
        let fragment: Fragment = toml::from_str(text)
            .map_err(|e| ctx.error(e.span(), e.message().trim_end().to_string()))?;
        let c = &mut self.config;
        if let Some(b) = fragment.binfmt {
            if let Some(p) = b.path {
                let span = p.span();
                if !p.get_ref().starts_with('/') {
                    return Err(ctx.error(Some(span), "binfmt.path must be an absolute path"));
                }
                let s = ctx.sourced(p);
                c.binfmt_path = Sourced {
                    value: PathBuf::from(s.value),
                    source: s.source,
                };
            }
            if let Some(m) = b.mount {
                c.binfmt_mount = ctx.sourced(m);
            }
            if let Some(e) = b.enable {
                c.binfmt_enable = ctx.sourced(e);
            }
        }
        if let Some(q) = fragment.qemu {
            if let Some(sp) = q.search_path {
                let span = sp.span();
                if let Some(bad) = sp.get_ref().iter().find(|d| !d.starts_with('/')) {
                    return Err(ctx.error(
                        Some(span),
                        format!("qemu.search_path: {bad:?} is not an absolute path"),
                    ));
                }
                let s = ctx.sourced(sp);
                c.search_path = Sourced {
                    value: s.value.into_iter().map(PathBuf::from).collect(),
                    source: s.source,
                };
            }
            if let Some(names) = q.binary_names {
                let span = names.span();
                if let Some(bad) = names
                    .get_ref()
                    .iter()
                    .find(|n| !n.contains("{arch}") || n.contains('/'))
                {
                    return Err(ctx.error(
                        Some(span),
                        format!("qemu.binary_names: {bad:?} must contain {{arch}} and no '/'"),
                    ));
                }
                c.binary_names = ctx.sourced(names);
            }
            if let Some(t) = q.targets {
                c.targets = ctx.arch_names(t, "targets", true)?;
            }
            if let Some(x) = q.exclude {
                c.exclude = ctx.arch_names(x, "exclude", false)?;
            }
            if let Some(f) = q.flags {
                c.flags = ctx.flags(f, "qemu.flags")?;
            }
            if let Some(p) = q.name_prefix {
                let span = p.span();
                validate_name(&format!("{}aarch64", p.get_ref()))
                    .map_err(|e| ctx.error(Some(span), format!("qemu.name_prefix: {e}")))?;
                c.name_prefix = ctx.sourced(p);
            }
            if let Some(t) = q.takeover {
                c.takeover = ctx.sourced(t);
            }
            for (name, over) in q.arch.unwrap_or_default() {
                Self::apply_arch(c, &ctx, name, over)?;
            }
        }
        for (name, raw) in fragment.entry.unwrap_or_default() {
            self.apply_entry(&ctx, name, raw)?;
        }
        if let Some(d) = fragment.daemon {
            if let Some(v) = d.debounce_ms {
                if *v.get_ref() > 60_000 {
                    return Err(ctx.error(Some(v.span()), "daemon.debounce_ms: at most 60000"));
                }
                self.config.debounce_ms = ctx.sourced(v);
            }
            if let Some(v) = d.unregister_on_stop {
                self.config.unregister_on_stop = ctx.sourced(v);
            }
            if let Some(v) = d.verify {
                self.config.verify = ctx.sourced(v);
            }
        }
        self.config.files.push(path.to_path_buf());
        Ok(())
    }

    fn apply_arch(
        c: &mut Config,
        ctx: &FileCtx,
        name: Spanned<String>,
        over: ArchFragment,
    ) -> Result<(), ConfigError> {
        if arch::find(name.get_ref()).is_none() {
            return Err(ctx.error(
                Some(name.span()),
                format!(
                    "[qemu.arch.{}]: unknown arch (see `qus arches`)",
                    name.get_ref()
                ),
            ));
        }
        let slot = c.arch.entry(name.into_inner()).or_default();
        if let Some(i) = over.interpreter {
            validate_interpreter(Path::new(i.get_ref()))
                .map_err(|e| ctx.error(Some(i.span()), format!("interpreter: {e}")))?;
            let s = ctx.sourced(i);
            slot.interpreter = Some(Sourced {
                value: PathBuf::from(s.value),
                source: s.source,
            });
        }
        if let Some(f) = over.flags {
            slot.flags = Some(ctx.flags(f, "flags")?);
        }
        if let Some(e) = over.enabled {
            slot.enabled = Some(ctx.sourced(e));
        }
        Ok(())
    }

    fn apply_entry(
        &mut self,
        ctx: &FileCtx,
        name: Spanned<String>,
        f: EntryFragment,
    ) -> Result<(), ConfigError> {
        validate_name(name.get_ref()).map_err(|e| {
            ctx.error(
                Some(name.span()),
                format!("[entry.{}]: {e}", name.get_ref()),
            )
        })?;
        let source = ctx.source(name.span());
        let slot = self.entries.entry(name.into_inner()).or_default();
        slot.source = Some(source);
        macro_rules! take {
            ($field:ident) => {
                if let Some(v) = f.$field {
                    slot.$field = Some(ctx.sourced(v));
                }
            };
        }
        take!(kind);
        take!(offset);
        take!(magic);
        take!(mask);
        take!(extension);
        take!(interpreter);
        take!(flags);
        take!(enabled);
        Ok(())
    }

    fn finish(mut self) -> Result<Config, ConfigError> {
        for (name, raw) in std::mem::take(&mut self.entries) {
            let entry = finish_entry(&name, raw)?;
            let clash = arch::ARCHES
                .iter()
                .any(|a| self.config.entry_name(a.name) == name);
            if clash {
                return Err(error_at(
                    &entry.source,
                    format!(
                        "[entry.{name}]: this name belongs to a qemu arch; use [qemu.arch.NAME] instead"
                    ),
                ));
            }
            self.config.entries.insert(name, entry);
        }
        Ok(self.config)
    }
}

fn error_at(source: &Source, message: String) -> ConfigError {
    match source {
        Source::File { path, line } => ConfigError {
            path: Some(path.clone()),
            line: Some(*line),
            message,
        },
        _ => ConfigError {
            path: None,
            line: None,
            message,
        },
    }
}

/// Turn merged raw fields into a checked custom entry; errors point at the
/// field at fault, or at the entry's table when a field is missing.
fn finish_entry(name: &str, raw: RawEntry) -> Result<CustomEntry, ConfigError> {
    let table = raw.source.clone().unwrap_or(Source::Default);
    let fail = |at: &Source, msg: String| Err(error_at(at, format!("[entry.{name}]: {msg}")));
    let interpreter = match &raw.interpreter {
        Some(i) => {
            if let Err(e) = validate_interpreter(Path::new(&i.value)) {
                return fail(&i.source, format!("interpreter: {e}"));
            }
            PathBuf::from(&i.value)
        }
        None => return fail(&table, "interpreter is required".into()),
    };
    let flags = match &raw.flags {
        Some(f) => match Flags::parse(&f.value) {
            Ok(flags) => flags,
            Err(e) => return fail(&f.source, format!("flags: {e}")),
        },
        None => Flags::default(),
    };
    let kind = match &raw.kind {
        Some(k) => k.value.as_str(),
        None if raw.extension.is_some() => "extension",
        None => "magic",
    };
    let matcher = match kind {
        "magic" => {
            if let Some(x) = &raw.extension {
                return fail(
                    &x.source,
                    "extension is only for type = \"extension\"".into(),
                );
            }
            let Some(magic_text) = &raw.magic else {
                return fail(&table, "magic is required for type = \"magic\"".into());
            };
            let magic = match escape::decode(&magic_text.value) {
                Ok(m) => m,
                Err(e) => return fail(&magic_text.source, format!("magic: {e}")),
            };
            let mask = match &raw.mask {
                Some(m) if !m.value.is_empty() => match escape::decode(&m.value) {
                    Ok(mask) if mask.len() != magic.len() => {
                        return fail(
                            &m.source,
                            format!(
                                "mask is {} bytes but magic is {}; they must be the same length",
                                mask.len(),
                                magic.len()
                            ),
                        )
                    }
                    Ok(mask) => Some(mask),
                    Err(e) => return fail(&m.source, format!("mask: {e}")),
                },
                _ => None,
            };
            Matcher::Magic {
                offset: raw.offset.as_ref().map_or(0, |o| o.value),
                magic,
                mask,
            }
        }
        "extension" => {
            for (present, at) in [
                (raw.magic.as_ref().map(|m| &m.source), "magic"),
                (raw.mask.as_ref().map(|m| &m.source), "mask"),
                (raw.offset.as_ref().map(|m| &m.source), "offset"),
            ] {
                if let Some(src) = present {
                    return fail(src, format!("{at} is only for type = \"magic\""));
                }
            }
            let Some(ext) = &raw.extension else {
                return fail(
                    &table,
                    "extension is required for type = \"extension\"".into(),
                );
            };
            Matcher::Extension(
                ext.value
                    .strip_prefix('.')
                    .unwrap_or(&ext.value)
                    .to_string(),
            )
        }
        other => {
            let at = raw.kind.as_ref().map_or(&table, |k| &k.source);
            return fail(
                at,
                format!("type {other:?} must be \"magic\" or \"extension\""),
            );
        }
    };
    let spec = EntrySpec {
        matcher,
        interpreter,
        flags,
    };
    if let Err(e) = spec.validate(name) {
        let at = raw
            .magic
            .as_ref()
            .or(raw.extension.as_ref())
            .map_or(&table, |m| &m.source);
        return fail(at, e.to_string());
    }
    Ok(CustomEntry {
        spec,
        enabled: raw.enabled.as_ref().is_none_or(|e| e.value),
        source: table,
    })
}

#[cfg(test)]
mod tests;
