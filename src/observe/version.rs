//! Which QEMU an entry runs: `qemu-aarch64 --version`, read once per file
//! (cached in the state dir by file identity, so an upgrade is seen and
//! `qus status` does not run 30 emulators every time).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::Identity;
use crate::state::StateDir;

/// The QEMU versions known to this process, by file identity: read from
/// the state dir's cache when first needed, kept for the life of the
/// process (qusd clones it into every pass, so choosing between emulators
/// asks each file once), written back by [`save`](Memo::save).
#[derive(Debug, Clone)]
pub struct Memo {
    state: StateDir,
    book: Arc<Mutex<Book>>,
}

#[derive(Debug, Default)]
struct Book {
    loaded: bool,
    known: BTreeMap<String, String>,
    /// Files that gave no version: not asked again in this process.
    unknown: HashSet<String>,
    changed: bool,
}

impl Memo {
    pub fn new(state: StateDir) -> Memo {
        Memo {
            state,
            book: Arc::default(),
        }
    }

    /// The version of the emulator at `path` (whose identity is known).
    pub fn of(&self, path: &Path, identity: &Identity) -> Option<String> {
        let key = format!(
            "{}:{}:{}:{}",
            identity.dev, identity.ino, identity.size, identity.mtime_ns
        );
        {
            let mut book = self.lock();
            if !book.loaded {
                book.known = self.state.load_versions();
                book.loaded = true;
            }
            if let Some(v) = book.known.get(&key) {
                return Some(v.clone());
            }
            if book.unknown.contains(&key) {
                return None;
            }
        }
        // Asked without the lock held: a pass and the main loop may ask at once.
        let v = ask(path);
        let mut book = self.lock();
        match &v {
            Some(v) => {
                book.known.insert(key, v.clone());
                book.changed = true;
            }
            None => {
                book.unknown.insert(key);
            }
        }
        v
    }

    /// Keep what was learnt in the state dir's cache (only when something
    /// was; failing costs only asking again next time).
    pub fn save(&self) {
        let mut book = self.lock();
        if book.changed {
            self.state.save_versions(&book.known);
            book.changed = false;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        // A pass that panicked holding it left a map, not a broken one.
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Which of several emulators for one arch to use: the newest QEMU
/// release (by `numbers`); among equals, and before any whose version is
/// unknown, the earliest (search order). `versions` in search order;
/// returns an index into it (0 when it is empty).
pub fn newest(versions: &[Option<(u32, u32, u32)>]) -> usize {
    let mut best: Option<(usize, (u32, u32, u32))> = None;
    for (i, v) in versions.iter().enumerate() {
        if let Some(v) = v {
            if best.is_none_or(|(_, b)| *v > b) {
                best = Some((i, *v));
            }
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// A `--version` that takes longer than this is a broken emulator.
const TIMEOUT: Duration = Duration::from_secs(2);

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
pub fn numbers(version: &str) -> Option<(u32, u32, u32)> {
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
    fn the_newest_qemu_wins_then_search_order() {
        use super::newest;
        assert_eq!(newest(&[Some((7, 2, 22)), Some((11, 1, 3))]), 1);
        assert_eq!(newest(&[Some((11, 1, 3)), Some((10, 0, 13))]), 0);
        // Equal: the first in search order.
        assert_eq!(newest(&[Some((11, 1, 3)), Some((11, 1, 3))]), 0);
        // Unknown versions rank below any known one...
        assert_eq!(newest(&[None, Some((7, 2, 0))]), 1);
        // ...and when none is known, search order decides.
        assert_eq!(newest(&[None, None]), 0);
        assert_eq!(newest(&[]), 0);
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
