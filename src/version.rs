//! Which QEMU an entry runs: `qemu-aarch64 --version`, read once per file
//! (cached in the state dir by file identity, so an upgrade is seen and
//! `qus status` does not run 30 emulators every time).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::model::Identity;
use crate::state::StateDir;

/// A `--version` that takes longer than this is a broken emulator.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Versions for many interpreters at once, through the cache.
pub struct Versions<'a> {
    state: &'a StateDir,
    cache: BTreeMap<String, String>,
    changed: bool,
}

impl<'a> Versions<'a> {
    pub fn new(state: &'a StateDir) -> Versions<'a> {
        Versions {
            cache: state.load_versions(),
            state,
            changed: false,
        }
    }

    /// The version of the emulator at `path` (whose identity is known).
    pub fn of(&mut self, path: &Path, identity: &Identity) -> Option<String> {
        let key = format!(
            "{}:{}:{}:{}",
            identity.dev, identity.ino, identity.size, identity.mtime_ns
        );
        if let Some(v) = self.cache.get(&key) {
            return Some(v.clone());
        }
        let v = ask(path)?;
        self.cache.insert(key, v.clone());
        self.changed = true;
        Some(v)
    }

    /// Keep what was learnt.
    pub fn save(self) {
        if self.changed {
            self.state.save_versions(&self.cache);
        }
    }
}

/// Run `PATH --version` and take the version from its first line
/// (`qemu-aarch64 version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)`).
fn ask(path: &Path) -> Option<String> {
    let mut cmd = Command::new(path);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    parse(&crate::child::output_within(&mut cmd, TIMEOUT).ok()?)
}

/// The version from `--version` output.
pub fn parse(output: &str) -> Option<String> {
    let first = output.lines().next()?.trim();
    let v = first.split_once(" version ").map_or(first, |(_, v)| v);
    (!v.is_empty()).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_lines() {
        assert_eq!(
            super::parse("qemu-aarch64 version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright (c) 2003-2022 Fabrice Bellard\n").as_deref(),
            Some("7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)")
        );
        assert_eq!(super::parse(""), None);
    }
}
