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
    // No stdin and no stderr for it: /dev/null where there is one, else an
    // empty pipe (a chroot or a minimal image may have no /dev at all, and
    // spawning would fail there for want of /dev/null).
    let quiet = || {
        if Path::new("/dev/null").exists() {
            Stdio::null()
        } else {
            Stdio::piped()
        }
    };
    cmd.arg("--version").stdin(quiet()).stderr(quiet());
    parse(&crate::child::output_within(&mut cmd, TIMEOUT).ok()?)
}

/// The version from `--version` output.
pub fn parse(output: &str) -> Option<String> {
    let first = output.lines().next()?.trim();
    let v = first.split_once(" version ").map_or(first, |(_, v)| v);
    (!v.is_empty()).then(|| v.to_string())
}

/// A QEMU release line with a known failure, from the peers' trackers.
/// Missing system calls are also measured by `qus test` (`syscalls`);
/// this table is what `qus status -v` can say without running anything,
/// and the failures no probe can see (crashes inside real workloads).
pub struct Known {
    /// `[from, to)`, as (major, minor, patch).
    pub from: (u32, u32, u32),
    pub to: (u32, u32, u32),
    /// The arches it was reported for; empty: all.
    pub arches: &'static [&'static str],
    pub what: &'static str,
}

pub static KNOWN: &[Known] = &[
    Known {
        from: (0, 0, 0),
        to: (9, 2, 0),
        arches: &[],
        what: "no openat2: tar in current userlands fails (abiosoft/colima#1613)",
    },
    Known {
        from: (0, 0, 0),
        to: (10, 0, 3),
        arches: &[],
        what: "no fchmodat2: chmod -h / cp -a need /proc (added in 10.1.0, 10.0.3)",
    },
    Known {
        from: (9, 2, 0),
        to: (9, 3, 0),
        arches: &["aarch64"],
        what: "libc-bin's ldconfig segfaults in apt (tonistiigi/binfmt#240, #245, \
               docker/setup-qemu-action#198, #201)",
    },
];

/// The known failures of a QEMU version (as `parse` returns it:
/// `11.1.3 (Debian …)`) for an arch.
pub fn known_failures(version: &str, arch: &str) -> Vec<&'static str> {
    let Some(v) = numbers(version) else {
        return vec![];
    };
    KNOWN
        .iter()
        .filter(|k| k.from <= v && v < k.to)
        .filter(|k| k.arches.is_empty() || k.arches.contains(&arch))
        .map(|k| k.what)
        .collect()
}

/// `11.1.3 (Debian 1:11.1.3+ds-2~bpo13+1)` → (11, 1, 3); `7.2.22` → …
fn numbers(version: &str) -> Option<(u32, u32, u32)> {
    let head = version.split_whitespace().next()?;
    let mut parts = head.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_failures_by_version_and_arch() {
        let old = super::known_failures("7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)", "s390x");
        assert_eq!(old.len(), 2, "{old:?}");
        assert!(old[0].starts_with("no openat2"));
        let v92 = super::known_failures("9.2.0", "aarch64");
        assert!(v92.iter().any(|w| w.contains("ldconfig")), "{v92:?}");
        assert!(super::known_failures("9.2.0", "riscv64")
            .iter()
            .all(|w| !w.contains("ldconfig")));
        assert!(
            super::known_failures("10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)", "aarch64").is_empty()
        );
        assert!(super::known_failures("11.1.3", "aarch64").is_empty());
        assert!(super::known_failures("not a version", "aarch64").is_empty());
    }

    #[test]
    fn version_lines() {
        assert_eq!(
            super::parse("qemu-aarch64 version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright (c) 2003-2022 Fabrice Bellard\n").as_deref(),
            Some("7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)")
        );
        assert_eq!(super::parse(""), None);
    }
}
