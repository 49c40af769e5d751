//! Custom `[entry.NAME]` tables: from merged raw fields to a checked
//! binfmt_misc entry, with errors that point at the field at fault.

use std::path::{Path, PathBuf};

use super::{ConfigError, CustomEntry, Source, Sourced};
use crate::binfmt::entry::{validate_configured_interpreter, EntrySpec, Flags, Matcher};
use crate::escape;

/// Raw `[entry.NAME]` fields merged across files, validated at the end.
#[derive(Default)]
pub(super) struct RawEntry {
    pub(super) kind: Option<Sourced<String>>,
    pub(super) offset: Option<Sourced<u32>>,
    pub(super) magic: Option<Sourced<String>>,
    pub(super) mask: Option<Sourced<String>>,
    pub(super) extension: Option<Sourced<String>>,
    pub(super) interpreter: Option<Sourced<String>>,
    pub(super) flags: Option<Sourced<String>>,
    pub(super) enabled: Option<Sourced<bool>>,
    pub(super) catch_host_programs: Option<Sourced<bool>>,
    pub(super) source: Option<Source>,
}

pub(super) fn error_at(source: &Source, message: String) -> ConfigError {
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

/// An error about `[entry.NAME]`, at `at`.
fn entry_error(name: &str, at: &Source, msg: String) -> ConfigError {
    error_at(at, format!("[entry.{name}]: {msg}"))
}

/// Turn merged raw fields into a checked custom entry; errors point at the
/// field at fault, or at the entry's table when a field is missing.
pub(super) fn finish_entry(name: &str, raw: RawEntry) -> Result<CustomEntry, ConfigError> {
    let table = raw.source.clone().unwrap_or(Source::Default);
    let fail = |at: &Source, msg: String| entry_error(name, at, msg);
    let interpreter = match &raw.interpreter {
        Some(i) => {
            validate_configured_interpreter(Path::new(&i.value))
                .map_err(|e| fail(&i.source, format!("interpreter: {e}")))?;
            PathBuf::from(&i.value)
        }
        None => return Err(fail(&table, "interpreter is required".into())),
    };
    let flags = match &raw.flags {
        Some(f) => Flags::parse(&f.value).map_err(|e| fail(&f.source, format!("flags: {e}")))?,
        None => Flags::default(),
    };
    let kind = match &raw.kind {
        Some(k) => k.value.as_str(),
        None if raw.extension.is_some() => "extension",
        None => "magic",
    };
    let matcher = match kind {
        "magic" => magic_matcher(name, &raw, &table)?,
        "extension" => extension_matcher(name, &raw, &table)?,
        other => {
            let at = raw.kind.as_ref().map_or(&table, |k| &k.source);
            return Err(fail(
                at,
                format!("type {other:?} must be \"magic\" or \"extension\""),
            ));
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
        return Err(fail(at, e.to_string()));
    }
    Ok(CustomEntry {
        spec,
        enabled: raw.enabled.as_ref().is_none_or(|e| e.value),
        catch_host_programs: raw.catch_host_programs.as_ref().is_some_and(|c| c.value),
        source: table,
    })
}

/// `type = "magic"`: offset, magic and an optional mask of the same length.
fn magic_matcher(name: &str, raw: &RawEntry, table: &Source) -> Result<Matcher, ConfigError> {
    let fail = |at: &Source, msg: String| entry_error(name, at, msg);
    if let Some(x) = &raw.extension {
        return Err(fail(
            &x.source,
            "extension is only for type = \"extension\"".into(),
        ));
    }
    let Some(magic_text) = &raw.magic else {
        return Err(fail(table, "magic is required for type = \"magic\"".into()));
    };
    ascii_only(&magic_text.value, "magic").map_err(|m| fail(&magic_text.source, m))?;
    if let Some(m) = &raw.mask {
        ascii_only(&m.value, "mask").map_err(|e| fail(&m.source, e))?;
    }
    let magic = escape::decode(&magic_text.value)
        .map_err(|e| fail(&magic_text.source, format!("magic: {e}")))?;
    let mask = match &raw.mask {
        Some(m) if !m.value.is_empty() => {
            let mask =
                escape::decode(&m.value).map_err(|e| fail(&m.source, format!("mask: {e}")))?;
            if mask.len() != magic.len() {
                return Err(fail(
                    &m.source,
                    format!(
                        "mask is {} bytes but magic is {}; they must be the same length",
                        mask.len(),
                        magic.len()
                    ),
                ));
            }
            Some(mask)
        }
        _ => None,
    };
    Ok(Matcher::Magic {
        offset: raw.offset.as_ref().map_or(0, |o| o.value),
        magic,
        mask,
    })
}

/// `type = "extension"`: the extension alone (a leading dot is dropped).
fn extension_matcher(name: &str, raw: &RawEntry, table: &Source) -> Result<Matcher, ConfigError> {
    let fail = |at: &Source, msg: String| entry_error(name, at, msg);
    for (present, at) in [
        (raw.magic.as_ref().map(|m| &m.source), "magic"),
        (raw.mask.as_ref().map(|m| &m.source), "mask"),
        (raw.offset.as_ref().map(|m| &m.source), "offset"),
    ] {
        if let Some(src) = present {
            return Err(fail(src, format!("{at} is only for type = \"magic\"")));
        }
    }
    let Some(ext) = &raw.extension else {
        return Err(fail(
            table,
            "extension is required for type = \"extension\"".into(),
        ));
    };
    Ok(Matcher::Extension(
        ext.value
            .strip_prefix('.')
            .unwrap_or(&ext.value)
            .to_string(),
    ))
}

/// `magic`/`mask` are bytes written with `\xNN` escapes. A TOML basic
/// string turns `"\u00ff"` into the *character* ÿ, which is two bytes in
/// UTF-8 (and `"\xff"` is not TOML at all), so any non-ASCII character is
/// almost certainly a byte meant differently: refuse it and say how.
fn ascii_only(text: &str, key: &str) -> Result<(), String> {
    match text.chars().find(|c| !c.is_ascii()) {
        None => Ok(()),
        Some(c) => Err(format!(
            "{key}: {c:?} (U+{:04X}) is not ASCII. In TOML a non-ASCII character is a \
             character, not a byte: \"\\u00ff\" is ÿ, two bytes in UTF-8. Write bytes as \
             binfmt_misc escapes in a literal (single-quoted) string: {key} = '\\x7fELF\\xff'",
            u32::from(c)
        )),
    }
}
