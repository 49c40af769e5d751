//! One drop-in being applied: turns TOML spans into `file:line` sources
//! and errors.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::fragment::{List, ListItem};
use super::{ConfigError, Source, Sourced};
use crate::arch;
use crate::binfmt::entry::Flags;

/// A list's values, each with its span.
pub(super) type Values = Spanned<Vec<Spanned<String>>>;

/// One file being applied: turns spans into lines.
pub(super) struct FileCtx<'a> {
    path: &'a Path,
    /// Byte offsets where lines start, for a binary search per span
    /// (counting newlines per value was quadratic in the file's size).
    line_starts: Vec<usize>,
}

impl<'a> FileCtx<'a> {
    pub(super) fn new(path: &'a Path, text: &str) -> FileCtx<'a> {
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

    pub(super) fn line(&self, span: Range<usize>) -> usize {
        match self.line_starts.binary_search(&span.start) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    pub(super) fn source(&self, span: Range<usize>) -> Source {
        Source::File {
            path: self.path.to_path_buf(),
            line: self.line(span),
        }
    }

    pub(super) fn error(
        &self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            path: Some(self.path.to_path_buf()),
            line: span.map(|s| self.line(s)),
            message: message.into(),
        }
    }

    pub(super) fn sourced<T>(&self, v: Spanned<T>) -> Sourced<T> {
        let span = v.span();
        Sourced {
            value: v.into_inner(),
            source: self.source(span),
        }
    }

    pub(super) fn flags(
        &self,
        v: Spanned<String>,
        what: &str,
    ) -> Result<Sourced<Flags>, ConfigError> {
        let span = v.span();
        let flags = Flags::parse(v.get_ref())
            .map_err(|e| self.error(Some(span.clone()), format!("{what}: {e}")))?;
        Ok(Sourced {
            value: flags,
            source: self.source(span),
        })
    }

    /// A list key's values, each with its span, and whether the list
    /// appends to the earlier files' value (a last element `{append =
    /// true}`) or, like every other key, replaces it.
    pub(super) fn list(&self, v: List, key: &str) -> Result<(Values, bool), ConfigError> {
        let span = v.span();
        let items = v.into_inner();
        let last = items.len().saturating_sub(1);
        let mut values = Vec::with_capacity(items.len());
        let mut append = false;
        for (i, item) in items.into_iter().enumerate() {
            let at = item.span();
            match item.into_inner() {
                ListItem::Value(text) => values.push(Spanned::new(at, text)),
                ListItem::Append(a) if i == last => append = a,
                ListItem::Append(_) => {
                    return Err(self.error(
                        Some(at),
                        format!("qemu.{key}: {{append = …}} must be the last element of the list"),
                    ))
                }
            }
        }
        Ok((Spanned::new(span, values), append))
    }

    pub(super) fn arch_names(
        &self,
        v: Spanned<Vec<Spanned<String>>>,
        key: &str,
        allow_all: bool,
    ) -> Result<Sourced<Vec<String>>, ConfigError> {
        let span = v.span();
        let mut names = vec![];
        for name in v.into_inner() {
            let canonical = if allow_all && name.get_ref() == "all" {
                Some("all")
            } else {
                arch::find(name.get_ref()).map(|a| a.name)
            };
            let Some(canonical) = canonical else {
                return Err(self.error(
                    Some(name.span()),
                    format!(
                        "qemu.{key}: unknown arch {:?}{} (see `qus arches`)",
                        name.get_ref(),
                        arch::did_you_mean(name.get_ref())
                    ),
                ));
            };
            names.push(canonical.to_string());
        }
        Ok(Sourced {
            value: names,
            source: self.source(span),
        })
    }
}
