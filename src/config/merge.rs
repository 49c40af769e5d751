//! Merging drop-ins in order, later wins, each value keeping its source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::custom::{error_at, finish_entry, RawEntry};
use super::fragment::TakeoverFragment;
use super::fragment::{
    ArchFragment, BinfmtFragment, DaemonFragment, EntryFragment, Fragment, QemuFragment,
};
use super::span::FileCtx;
use super::{Config, ConfigError, Others, Source, Sourced, Takeover};
use crate::arch;
use crate::binfmt::entry::{validate_interpreter, validate_name};

/// Lists across drop-ins follow systemd's convention: the first file that
/// sets a list replaces the built-in default, every later file adds to it
/// (duplicates dropped), and an empty list clears it. So `exclude =
/// ["mips64"]` in one drop-in and `exclude = ["s390x"]` in a later one
/// exclude both.
fn add_to_list<T: PartialEq>(list: &mut Sourced<Vec<T>>, new: Sourced<Vec<T>>) {
    if new.value.is_empty() || list.source == Source::Default {
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
            let span = sp.span();
            if let Some(bad) = sp.get_ref().iter().find(|d| !d.starts_with('/')) {
                return Err(ctx.error(
                    Some(span),
                    format!("qemu.search_path: {bad:?} is not an absolute path"),
                ));
            }
            let s = ctx.sourced(sp);
            add_to_list(
                &mut c.search_path,
                Sourced {
                    value: s.value.into_iter().map(PathBuf::from).collect(),
                    source: s.source,
                },
            );
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
            add_to_list(&mut c.binary_names, ctx.sourced(names));
        }
        if let Some(t) = q.targets {
            add_to_list(&mut c.targets, ctx.arch_names(t, "targets", true)?);
        }
        if let Some(x) = q.exclude {
            add_to_list(&mut c.exclude, ctx.arch_names(x, "exclude", false)?);
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
                    "[qemu.arch.{}]: unknown arch (see `qus arches`)",
                    name.get_ref()
                ),
            ));
        };
        let slot = c.arch.entry(canonical.to_string()).or_default();
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

/// `others = "yield" | "override"`.
fn others(ctx: &FileCtx, v: Spanned<String>, key: &str) -> Result<Sourced<Others>, ConfigError> {
    let span = v.span();
    let value = match v.get_ref().as_str() {
        "yield" => Others::Yield,
        "override" => Others::Override,
        w => {
            return Err(ctx.error(
                Some(span),
                format!("{key}: {w:?} must be \"yield\" or \"override\""),
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
