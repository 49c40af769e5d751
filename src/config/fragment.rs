//! One drop-in file as written: every field optional, every value with its
//! byte span so errors can name the line. Unknown keys are errors.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fragment {
    pub binfmt: Option<BinfmtFragment>,
    pub qemu: Option<QemuFragment>,
    pub entry: Option<BTreeMap<Spanned<String>, EntryFragment>>,
    pub daemon: Option<DaemonFragment>,
    pub guard: Option<GuardFragment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinfmtFragment {
    pub path: Option<Spanned<String>>,
    pub mount: Option<Spanned<bool>>,
    pub enable: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuFragment {
    pub search_path: Option<Spanned<Vec<String>>>,
    pub binary_names: Option<Spanned<Vec<String>>>,
    pub targets: Option<Spanned<Vec<Spanned<String>>>>,
    pub exclude: Option<Spanned<Vec<Spanned<String>>>>,
    pub flags: Option<Spanned<String>>,
    pub name_prefix: Option<Spanned<String>>,
    pub takeover: Option<Spanned<TakeoverFragment>>,
    pub others: Option<Spanned<String>>,
    pub allow_dynamic: Option<Spanned<bool>>,
    pub arch: Option<BTreeMap<Spanned<String>, ArchFragment>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchFragment {
    pub interpreter: Option<Spanned<String>>,
    pub flags: Option<Spanned<String>>,
    pub enabled: Option<Spanned<bool>>,
    pub catch_host_programs: Option<Spanned<bool>>,
    pub others: Option<Spanned<String>>,
    pub allow_dynamic: Option<Spanned<bool>>,
}

/// `takeover = true | false | "distro"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TakeoverFragment {
    Bool(bool),
    Word(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardFragment {
    pub others: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryFragment {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub offset: Option<Spanned<u32>>,
    pub magic: Option<Spanned<String>>,
    pub mask: Option<Spanned<String>>,
    pub extension: Option<Spanned<String>>,
    pub interpreter: Option<Spanned<String>>,
    pub flags: Option<Spanned<String>>,
    pub enabled: Option<Spanned<bool>>,
    pub catch_host_programs: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonFragment {
    pub debounce_ms: Option<Spanned<u64>>,
    pub unregister_on_stop: Option<Spanned<bool>>,
    pub verify: Option<Spanned<bool>>,
}
