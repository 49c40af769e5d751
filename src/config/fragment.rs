//! One drop-in file as written: every field optional, every value with its
//! byte span so errors can name the line. Unknown keys are errors.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// A list key as written: its elements, each with its span.
pub type List = Spanned<Vec<Spanned<ListItem>>>;

/// One element of a list key: a value, or containers.conf's marker
/// `{append = true}` (allowed only as the last element), which makes the
/// list add to the earlier files' value instead of replacing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListItem {
    Value(String),
    Append(bool),
}

impl<'de> Deserialize<'de> for ListItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ListItem, D::Error> {
        struct Item;
        impl<'de> Visitor<'de> for Item {
            type Value = ListItem;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, or {append = true} as the last element")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ListItem, E> {
                Ok(ListItem::Value(v.to_string()))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListItem, A::Error> {
                let mut append = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "append" {
                        return Err(de::Error::unknown_field(&key, &["append"]));
                    }
                    append = Some(map.next_value::<bool>()?);
                }
                append
                    .map(ListItem::Append)
                    .ok_or_else(|| de::Error::missing_field("append"))
            }
        }
        d.deserialize_any(Item)
    }
}

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
    pub search_path: Option<List>,
    pub binary_names: Option<List>,
    pub targets: Option<List>,
    pub exclude: Option<List>,
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
