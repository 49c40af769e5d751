//! Merging drop-ins in order, later wins (lists too, unless they end with
//! `{append = true}`), each value keeping its source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::custom::{error_at, finish_entry, RawEntry};
use super::fragment::{
    ArchFragment, BinfmtFragment, DaemonFragment, EntryFragment, Fragment, QemuFragment,
};
use super::fragment::{List, TakeoverFragment};
use super::span::FileCtx;
use super::{Config, ConfigError, Others, Source, Sourced, Takeover};
use crate::arch;
use crate::binfmt::entry::{validate_configured_interpreter, validate_name};

/// Lists across drop-ins follow containers.conf's convention: a later
/// file's list replaces the earlier value, like every other key, so a
/// host's drop-in (or a mounted ConfigMap) narrows `targets` with one
/// file; a last element `{append = true}` adds to it instead (duplicates
/// dropped), and `[]` empties it.
fn set_list<T: PartialEq>(list: &mut Sourced<Vec<T>>, new: Sourced<Vec<T>>, append: bool) {
    if !append {
        *list = new;
        return;
    }
    for v in new.value {
        if !list.value.contains(&v) {
            list.value.push(v);
        }
    }
    let mut parts = match std::mem::replace(&mut list.source, Source::Default) {
        Source::Merged(parts) => parts,
        one => vec![one],
    };
    parts.push(new.source);
    list.source = Source::Merged(parts);
}

/// A list of plain strings, each checked by `bad` (an error at the
/// element's own line), and whether it appends.
fn plain_list(
    ctx: &FileCtx,
    list: List,
    key: &str,
    bad: impl Fn(&str) -> Option<String>,
) -> Result<(Sourced<Vec<String>>, bool), ConfigError> {
    let (values, append) = ctx.list(list, key)?;
    if let Some((v, why)) = values
        .get_ref()
        .iter()
        .find_map(|v| bad(v.get_ref()).map(|why| (v, why)))
    {
        return Err(ctx.error(Some(v.span()), format!("qemu.{key}: {why}")));
    }
    let s = ctx.sourced(values);
    let value = s.value.into_iter().map(Spanned::into_inner).collect();
    Ok((
        Sourced {
            value,
            source: s.source,
        },
        append,
    ))
}

#[derive(Default)]
pub(super) struct Merger {
    config: Config,
    entries: BTreeMap<String, RawEntry>,
}

impl Merger {
    /// Apply one drop-in on top of what was merged so far.
    pub(super) fn apply(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let ctx = FileCtx::new(path, text);
        let fragment: Fragment = toml::from_str(text)
            .map_err(|e| ctx.error(e.span(), in_config_words(e.message().trim_end())))?;
        if let Some(b) = fragment.binfmt {
            Self::apply_binfmt(&mut self.config, &ctx, b)?;
        }
        if let Some(q) = fragment.qemu {
            Self::apply_qemu(&mut self.config, &ctx, q)?;
        }
        for (name, raw) in fragment.entry.unwrap_or_default() {
            self.apply_entry(&ctx, name, raw)?;
        }
        if let Some(d) = fragment.daemon {
            Self::apply_daemon(&mut self.config, &ctx, d)?;
        }
        if let Some(g) = fragment.guard {
            if let Some(o) = g.others {
                self.config.guard_others = ctx.sourced(o);
            }
        }
        self.config.files.push(path.to_path_buf());
        Ok(())
    }

    fn apply_binfmt(c: &mut Config, ctx: &FileCtx, b: BinfmtFragment) -> Result<(), ConfigError> {
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
        Ok(())
    }

    fn apply_qemu(c: &mut Config, ctx: &FileCtx, q: QemuFragment) -> Result<(), ConfigError> {
        if let Some(sp) = q.search_path {
            let (dirs, append) = plain_list(ctx, sp, "search_path", |d| {
                (!d.starts_with('/')).then(|| format!("{d:?} is not an absolute path"))
            })?;
            let dirs = Sourced {
                value: dirs.value.into_iter().map(PathBuf::from).collect(),
                source: dirs.source,
            };
            set_list(&mut c.search_path, dirs, append);
        }
        if let Some(names) = q.binary_names {
            let (names, append) = plain_list(ctx, names, "binary_names", |n| {
                (!n.contains("{arch}") || n.contains('/'))
                    .then(|| format!("{n:?} must contain {{arch}} and no '/'"))
            })?;
            set_list(&mut c.binary_names, names, append);
        }
        if let Some(t) = q.targets {
            let (t, append) = ctx.list(t, "targets")?;
            set_list(&mut c.targets, ctx.arch_names(t, "targets", true)?, append);
        }
        if let Some(x) = q.exclude {
            let (x, append) = ctx.list(x, "exclude")?;
            set_list(&mut c.exclude, ctx.arch_names(x, "exclude", false)?, append);
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
            let span = t.span();
            let value = match t.get_ref() {
                TakeoverFragment::Bool(true) => Takeover::All,
                TakeoverFragment::Bool(false) => Takeover::Never,
                TakeoverFragment::Word(w) if w == "distro" => Takeover::Distro,
                TakeoverFragment::Word(w) => {
                    return Err(ctx.error(
                        Some(span),
                        format!("qemu.takeover: {w:?} must be true, false or \"distro\""),
                    ))
                }
            };
            c.takeover = Sourced {
                value,
                source: ctx.source(span),
            };
        }
        if let Some(o) = q.others {
            c.others = others(ctx, o, "qemu.others")?;
        }
        if let Some(d) = q.allow_dynamic {
            c.allow_dynamic = ctx.sourced(d);
        }
        for (name, over) in q.arch.unwrap_or_default() {
            Self::apply_arch(c, ctx, name, over)?;
        }
        Ok(())
    }

    fn apply_daemon(c: &mut Config, ctx: &FileCtx, d: DaemonFragment) -> Result<(), ConfigError> {
        if let Some(v) = d.debounce_ms {
            if *v.get_ref() > 60_000 {
                return Err(ctx.error(Some(v.span()), "daemon.debounce_ms: at most 60000"));
            }
            c.debounce_ms = ctx.sourced(v);
        }
        if let Some(v) = d.unregister_on_stop {
            c.unregister_on_stop = ctx.sourced(v);
        }
        if let Some(v) = d.verify {
            c.verify = ctx.sourced(v);
        }
        Ok(())
    }

    fn apply_arch(
        c: &mut Config,
        ctx: &FileCtx,
        name: Spanned<String>,
        over: ArchFragment,
    ) -> Result<(), ConfigError> {
        let Some(canonical) = arch::find(name.get_ref()).map(|a| a.name) else {
            return Err(ctx.error(
                Some(name.span()),
                format!(
                    "[qemu.arch.{}]: unknown arch{} (see `qus arches`)",
                    name.get_ref(),
                    arch::did_you_mean(name.get_ref())
                ),
            ));
        };
        let slot = c.arch.entry(canonical.to_string()).or_default();
        if let Some(i) = over.interpreter {
            validate_configured_interpreter(Path::new(i.get_ref()))
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
        if let Some(c) = over.catch_host_programs {
            slot.catch_host_programs = Some(ctx.sourced(c));
        }
        if let Some(d) = over.allow_dynamic {
            slot.allow_dynamic = Some(ctx.sourced(d));
        }
        if let Some(o) = over.others {
            slot.others = Some(others(ctx, o, "others")?);
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
        take!(catch_host_programs);
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<Config, ConfigError> {
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

/// `others = "yield" | "yield-always" | "override"`.
fn others(ctx: &FileCtx, v: Spanned<String>, key: &str) -> Result<Sourced<Others>, ConfigError> {
    let span = v.span();
    let value = match v.get_ref().as_str() {
        "yield" => Others::Yield,
        "override" => Others::Override,
        "yield-always" => Others::YieldAlways,
        w => {
            return Err(ctx.error(
                Some(span),
                format!("{key}: {w:?} must be \"yield\", \"yield-always\" or \"override\""),
            ))
        }
    };
    Ok(Sourced {
        value,
        source: ctx.source(span),
    })
}

/// serde's wording, in the configuration's words: an unknown key gets the
/// closest known one suggested, and Rust type names become TOML ones.
pub(super) fn in_config_words(message: &str) -> String {
    let mut out = message
        .replace("expected u32", "expected a whole number (0 or more)")
        .replace("expected u64", "expected a whole number (0 or more)")
        .replace(
            "expected a sequence",
            "expected a list, like [\"a\", \"b\"]",
        )
        .replace("expected a map", "expected a table")
        .replace(
            "data did not match any variant of untagged enum TakeoverFragment",
            "expected true, false or \"distro\"",
        );
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or("");
        let known: Vec<&str> = rest
            .split_once("expected one of ")
            .map(|(_, list)| list.split(", ").map(|k| k.trim_matches('`')).collect())
            .or_else(|| {
                rest.split_once("expected `")
                    .map(|(_, k)| vec![k.trim_end_matches('`')])
            })
            .unwrap_or_default();
        let best = known
            .iter()
            .map(|k| (strsim::damerau_levenshtein(unknown, k), *k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 3))
            .min();
        out = format!("unknown key `{unknown}`");
        match best {
            Some((_, k)) => out.push_str(&format!(": did you mean `{k}`?")),
            None if !known.is_empty() => out.push_str(&format!(
                " (known here: {})",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => {}
        }
    }
    out
}
