//! The ownership records (`owned.json`): which entries qus registered or
//! adopted, and what each replaced. What the file means is decided here
//! without the file ([`decode`], [`encode`], tested below); [`StateDir`]
//! only reads and writes it.

use std::io;

use serde::{Deserialize, Serialize};

use super::StateDir;
use crate::binfmt::entry::parse_register_line;
use crate::model::{Identity, Owned, OwnedEntries};

const FILE: &str = "owned.json";

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    entries: std::collections::BTreeMap<String, Record>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    arch: Option<String>,
    /// The register string qus wrote (or would have written).
    register: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<Identity>,
    /// The register string of the entry qus took the name over from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replaced: Option<String>,
}

impl StateDir {
    /// Read the ownership records. Returns the records and, when they were
    /// unusable (or the directory cannot be trusted), a warning saying why
    /// (the records are then empty: qus adopts, never removes, on doubt).
    pub fn load(&self) -> (OwnedEntries, Option<String>) {
        let dir = match self.open_checked() {
            Ok(Some(d)) => d,
            Ok(None) => return (OwnedEntries::new(), None),
            Err(why) => {
                return (
                    OwnedEntries::new(),
                    Some(format!("{why}; ignoring its records")),
                )
            }
        };
        match dir.read(FILE) {
            Ok(Some(text)) => {
                let (owned, warning) = decode(&text);
                let path = self.dir.join(FILE);
                (owned, warning.map(|w| format!("{}: {w}", path.display())))
            }
            Ok(None) => (OwnedEntries::new(), None),
            Err(e) => (OwnedEntries::new(), Some(e.to_string())),
        }
    }

    /// Write the records atomically (and flushed: they outlive a crash).
    pub fn save(&self, owned: &OwnedEntries) -> io::Result<()> {
        let text = encode(owned).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.write(FILE, text.as_bytes())
    }
}

/// The records a file's text holds, and what was wrong with it, if
/// anything. A file that is not JSON of this shape holds none (qus starts
/// afresh: it then adopts identical entries and removes nothing); a record
/// whose register line does not parse is dropped alone, by name; a
/// `replaced` line that does not parse is forgotten (nothing to put back),
/// the record kept.
fn decode(text: &str) -> (OwnedEntries, Option<String>) {
    let disk: OnDisk = match serde_json::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            return (
                OwnedEntries::new(),
                Some(format!("corrupt, starting afresh: {e}")),
            )
        }
    };
    let mut owned = OwnedEntries::new();
    let mut bad = Vec::new();
    for (name, r) in disk.entries {
        let replaced = r
            .replaced
            .as_deref()
            .and_then(|l| parse_register_line(l).ok())
            .map(|(_, spec)| spec);
        match parse_register_line(&r.register) {
            Ok((_, spec)) => {
                owned.insert(
                    name,
                    Owned {
                        arch: r.arch,
                        spec,
                        identity: r.identity,
                        replaced,
                    },
                );
            }
            Err(e) => bad.push(format!("{name}: {e}")),
        }
    }
    let warning = (!bad.is_empty()).then(|| format!("dropped bad records: {}", bad.join("; ")));
    (owned, warning)
}

/// The file's text for these records: compact JSON (a third smaller than
/// pretty-printed, which counts at 1000 entries, qusd's peak memory, and on
/// every cold start; `jq . owned.json` shows it to people), one line.
fn encode(owned: &OwnedEntries) -> serde_json::Result<String> {
    let disk = OnDisk {
        version: 1,
        entries: owned
            .iter()
            .map(|(name, o)| {
                (
                    name.clone(),
                    Record {
                        arch: o.arch.clone(),
                        register: o.spec.register_line(name),
                        identity: o.identity,
                        replaced: o.replaced.as_ref().map(|r| r.register_line(name)),
                    },
                )
            })
            .collect(),
    };
    let mut text = serde_json::to_string(&disk)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(line: &str) -> crate::binfmt::EntrySpec {
        parse_register_line(line).expect("register line").1
    }

    fn record(register: &str, replaced: Option<&str>) -> Owned {
        Owned {
            arch: Some("aarch64".into()),
            spec: spec(register),
            identity: Some(Identity {
                dev: 1,
                ino: 2,
                size: 3,
                mtime_ns: 4,
            }),
            replaced: replaced.map(spec),
        }
    }

    const OURS: &str = r":qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:PF";
    const DEBIAN: &str = r":qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF";

    #[test]
    fn records_round_trip_with_what_they_replaced() {
        let mut owned = OwnedEntries::new();
        owned.insert("qemu-aarch64".into(), record(OURS, Some(DEBIAN)));
        owned.insert(
            "qemu-s390x".into(),
            record(&OURS.replace("aarch64", "s390x"), None),
        );
        let text = encode(&owned).expect("encode");
        assert_eq!(text.lines().count(), 1, "one line: {text}");
        let (back, warning) = decode(&text);
        assert_eq!(warning, None);
        assert_eq!(back, owned);
    }

    #[test]
    fn a_corrupt_file_holds_no_records_and_says_so() {
        for text in ["", "{", "[]", "{\"version\":1}", "\u{0}"] {
            let (owned, warning) = decode(text);
            assert!(owned.is_empty(), "{text:?}");
            assert!(
                warning
                    .as_deref()
                    .is_some_and(|w| w.starts_with("corrupt, starting afresh")),
                "{text:?}: {warning:?}"
            );
        }
    }

    #[test]
    fn a_bad_record_is_dropped_alone_and_named() {
        let mut owned = OwnedEntries::new();
        owned.insert("qemu-aarch64".into(), record(OURS, None));
        let mut json: serde_json::Value =
            serde_json::from_str(&encode(&owned).expect("encode")).expect("json");
        json["entries"]["qemu-bad"] = serde_json::json!({"register": ":qemu-bad:X::nonsense"});
        let text = json.to_string();
        let (back, warning) = decode(&text);
        assert_eq!(back.keys().collect::<Vec<_>>(), ["qemu-aarch64"], "{text}");
        let warning = warning.expect("a warning");
        assert!(
            warning.starts_with("dropped bad records: qemu-bad:"),
            "{warning}"
        );
    }

    #[test]
    fn an_unparsable_replaced_line_is_forgotten_not_the_record() {
        let mut owned = OwnedEntries::new();
        owned.insert("qemu-aarch64".into(), record(OURS, Some(DEBIAN)));
        let mut json: serde_json::Value =
            serde_json::from_str(&encode(&owned).expect("encode")).expect("json");
        json["entries"]["qemu-aarch64"]["replaced"] = ":qemu-aarch64:X::nonsense".into();
        let (back, warning) = decode(&json.to_string());
        assert_eq!(warning, None);
        let r = &back["qemu-aarch64"];
        assert_eq!(r.replaced, None);
        assert_eq!(r.spec, spec(OURS));
    }
}
