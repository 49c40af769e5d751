//! qusd's rules, as data: when a batch of events has settled, when a
//! repair has become a fight, when binfmt_misc was flushed, when a
//! vanished config directory keeps the old configuration, how long to
//! back off, which events are only qusd's own echo, and what to watch.
//!
//! Nothing here reads a clock or a file: time and observations come in as
//! arguments, so every rule is tested below with synthetic sequences
//! (bursts, steady streams, flushes, two registrars fighting), the way the
//! planner is tested without the kernel. The event loop in `mod.rs` feeds
//! them and carries out what they decide.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::binfmt::KernelEntries;
use crate::config::Config;

use super::events::{Targets, Trigger};

/// How long a burst of complete-file or config events must be quiet
/// before a pass: long enough to collapse `dpkg` unpacking 35 emulators or
/// an editor's write + rename into few passes, short enough that one
/// emulator appearing is live within milliseconds.
pub const QUIET: Duration = Duration::from_millis(3);

/// After this many identical repairs of one entry in a row, each within
/// [`FIGHT_WINDOW`] of the one before, someone else keeps undoing them
/// (another registrar, a second qusd with another configuration): qusd
/// stops touching that entry instead of fighting. Repairs further apart
/// (an administrator restarting systemd-binfmt now and then) are not a
/// fight and never count up.
pub const GIVE_UP_AFTER: u32 = 5;
const FIGHT_WINDOW: Duration = Duration::from_secs(5);

/// The first retry after a failed pass, and the longest wait between
/// retries (the wait doubles in between).
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(60);

/// Events waiting for a pass, and when that pass is due.
#[derive(Debug, Default)]
pub struct Settle {
    trigger: Trigger,
    /// When the first event of this batch arrived (the batch waits at most
    /// `daemon.debounce_ms` after it, however many events follow).
    since: Option<Instant>,
    /// When to act, if anything is pending.
    deadline: Option<Instant>,
    /// A SIGHUP arrived while a pass ran.
    pub reload: bool,
}

impl Settle {
    /// Event-aware settling. binfmt_misc events (an entry removed or
    /// disabled, possibly qusd's own echo) act at once: a repair is
    /// urgent and an echo costs nothing. File and config events count only
    /// once a file is complete (the watch set holds back files still open
    /// for writing) and then wait for a short quiet window, so a burst
    /// becomes one pass; `max_wait` (`daemon.debounce_ms`) bounds how long
    /// a stream of events can postpone it.
    pub fn add(&mut self, t: Trigger, max_wait: Duration, now: Instant) {
        let urgent = t.kernel_only();
        self.trigger.merge(t);
        let since = *self.since.get_or_insert(now);
        let quiet = if urgent {
            Duration::ZERO
        } else {
            QUIET.min(max_wait)
        };
        let at = (now + quiet).min(since + max_wait);
        self.deadline = Some(match self.deadline {
            // An earlier deadline set by an urgent event stays.
            Some(d) if d <= now => d,
            _ => at,
        });
    }

    /// Run a pass again after `delay` (a failed pass, e.g. the lock held
    /// by a long `qus` run), unless events bring one sooner.
    pub fn retry(&mut self, delay: Duration, now: Instant) {
        self.trigger.merge(Trigger {
            files: true,
            ..Trigger::default()
        });
        let at = now + delay;
        self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
    }

    /// When the pending batch is due, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The batch, for a pass; nothing is pending afterwards.
    pub fn take(&mut self) -> Trigger {
        self.since = None;
        self.deadline = None;
        std::mem::take(&mut self.trigger)
    }
}

/// The fight breaker: identical repairs of one entry in quick succession
/// are counted, and an entry repaired [`GIVE_UP_AFTER`] times in a row is
/// left alone until the configuration changes or SIGHUP. No loop between
/// two registrars may run unbounded.
#[derive(Debug, Default)]
pub struct RepairCounter {
    /// Per entry: the last repair, how many times in a row, and when.
    repeats: BTreeMap<String, (String, u32, Instant)>,
    /// Entries given up on, with why.
    given_up: BTreeMap<String, String>,
}

impl RepairCounter {
    /// Count one pass's repairs (entry name, what was written). An entry
    /// not repaired this pass starts again from nought. Returns the
    /// entries given up on just now.
    pub fn count(&mut self, repairs: &[(String, String)], now: Instant) -> Vec<String> {
        let mut next = BTreeMap::new();
        let mut newly = Vec::new();
        for (name, what) in repairs {
            let n = match self.repeats.get(name) {
                Some((last, n, at)) if last == what && now.duration_since(*at) < FIGHT_WINDOW => {
                    n + 1
                }
                _ => 1,
            };
            if n >= GIVE_UP_AFTER {
                let why = if name == crate::plan::SWITCH_HOLD {
                    format!(
                        "gave up switching binfmt_misc back on: it was switched off again {n} \
                         times in a row; leaving it off until the configuration changes or SIGHUP"
                    )
                } else {
                    format!(
                        "gave up on {name}: the same repair was undone {n} times in a row \
                         (another registrar or qusd with another configuration?); \
                         leaving it until the configuration changes or SIGHUP"
                    )
                };
                self.given_up.insert(name.clone(), why);
                newly.push(name.clone());
            } else {
                next.insert(name.clone(), (what.clone(), n, now));
            }
        }
        self.repeats = next;
        newly
    }

    /// Entries qusd no longer repairs, with why.
    pub fn given_up(&self) -> &BTreeMap<String, String> {
        &self.given_up
    }

    /// Start over (a new configuration, or SIGHUP).
    pub fn clear(&mut self) {
        self.repeats.clear();
        self.given_up.clear();
    }
}

/// The flush guard (`guard.others`): were other tools' entries flushed,
/// so they are to be put back exactly? Only when everything vanished at
/// once (a `-1` to `status`, a WSL flush, a remount): an entry removed on
/// its own stays removed, so qusd never fights a deliberate removal. A
/// flush takes qus's own entries too; with none of those, at least two
/// others must have gone together.
///
/// `systemd-binfmt` flushes and then at once registers its own entries
/// again (a restart of it flushes twice), so binfmt_misc is seldom empty
/// by the time qusd looks. `vanished` (the names binfmt_misc reported
/// removed since the last pass began) tells that case: every other tool's
/// entry went, none is back, and more went with them.
pub fn flushed(
    others_last: &KernelEntries,
    owned_any: bool,
    kernel_now: &KernelEntries,
    vanished: &BTreeSet<String>,
) -> bool {
    if others_last.is_empty() || others_last.keys().any(|n| kernel_now.contains_key(n)) {
        return false;
    }
    if kernel_now.is_empty() {
        return owned_any || others_last.len() >= 2;
    }
    others_last.keys().all(|n| vanished.contains(n)) && vanished.len() > others_last.len()
}

/// Other tools' entries to remember after a pass: those the pass saw, and
/// those it did not see because a flush removed them while it ran (they
/// vanished together with others, and the next pass, woken by that flush,
/// is the one to put them back). Without the second, a flush landing
/// during a pass (`systemctl restart systemd-binfmt` flushes twice, and a
/// package upgrade restarts it while qusd re-registers) made qusd forget
/// them.
///
/// While such a flush is still to be put back (the pass started before
/// its removals were read), the set stays as it was before the flush: the
/// entries that appeared since (`systemd-binfmt` registers its own again at
/// once) would otherwise count as survivors, and [`flushed`] would never
/// see it.
pub fn others_to_remember(
    last: &KernelEntries,
    seen: KernelEntries,
    vanished: &BTreeSet<String>,
) -> KernelEntries {
    let pending = vanished.len() >= 2
        && last
            .keys()
            .any(|n| vanished.contains(n) && !seen.contains_key(n));
    if pending {
        return last.clone();
    }
    let mut others = seen;
    if vanished.len() >= 2 {
        for (name, entry) in last {
            if vanished.contains(name) {
                others.entry(name.clone()).or_insert_with(|| entry.clone());
            }
        }
    }
    others
}

/// The vanished-config rule: a config directory that was there when the
/// configuration in force was loaded and is gone now (an unmounted
/// volume, a directory being replaced) keeps that configuration until it
/// is back, unless the reload was asked for (SIGHUP). Returns the reason
/// to keep it, when it must be kept.
pub fn keep_config(seen: &[PathBuf], now: &[PathBuf], asked: bool) -> Option<String> {
    let gone: Vec<String> = seen
        .iter()
        .filter(|d| !now.contains(d))
        .map(|d| d.display().to_string())
        .collect();
    (!gone.is_empty() && !asked).then(|| {
        format!(
            "config directory {} vanished; keeping the previous configuration until it is back (or SIGHUP)",
            gone.join(", ")
        )
    })
}

/// The wait before retrying after a pass: none after a success; after
/// failures in a row, [`FIRST_RETRY`] doubling up to [`LONGEST_RETRY`].
pub fn backoff(previous: Option<Duration>, failed: bool) -> Option<Duration> {
    failed.then(|| previous.map_or(FIRST_RETRY, |b| (b * 2).min(LONGEST_RETRY)))
}

/// The wait before trying again an entry whose interpreter was open for
/// writing (ETXTBSY): the writer's close is not always seen (an
/// `O_TMPFILE` linked in reports none), so qusd looks again, soon at
/// first and then every [`LONGEST_BUSY_RETRY`] while it stays busy.
pub fn busy_retry(previous: Option<Duration>, busy: bool) -> Option<Duration> {
    busy.then(|| previous.map_or(FIRST_BUSY_RETRY, |b| (b * 2).min(LONGEST_BUSY_RETRY)))
}

/// How often qusd looks again at a refused state dir (see
/// [`crate::observe::Request::remembered`]).
pub const STATE_RECHECK: Duration = Duration::from_secs(1);

const FIRST_BUSY_RETRY: Duration = Duration::from_millis(250);
const LONGEST_BUSY_RETRY: Duration = Duration::from_secs(4);

/// Is this batch only the echo of qusd's own writes? Only binfmt_misc
/// changed, and it holds exactly what the last pass left (global switch
/// and entries, compared the way the kernel shows them). Then it costs no
/// pass, so qusd never loops on itself.
///
/// What qusd gave up on (`given_up`: entries, and the global switch as
/// [`crate::plan::SWITCH_HOLD`]) does not count: giving up means no pass
/// for that cause until something else changes, not a pass that then
/// leaves it alone (a loop switching binfmt_misc off cost 1,918 passes in
/// 15 s, a takeover war 110 in 10 s).
pub fn is_echo(
    t: &Trigger,
    now: Option<&(bool, KernelEntries)>,
    last: Option<&(bool, KernelEntries)>,
    given_up: &BTreeMap<String, String>,
) -> bool {
    let switch_held = given_up.contains_key(crate::plan::SWITCH_HOLD);
    let unchanged = match (now, last) {
        (Some((en, now)), Some((last_en, last))) => {
            (en == last_en || switch_held) && same_kernel(now, last, given_up)
        }
        _ => false,
    };
    t.kernel_only() && unchanged
}

/// Do both hold the same entries, compared the way the kernel shows them
/// (masked magic, C as OC), leaving out the `ignored` names?
fn same_kernel(a: &KernelEntries, b: &KernelEntries, ignored: &BTreeMap<String, String>) -> bool {
    let kept = |k: &KernelEntries| k.keys().filter(|n| !ignored.contains_key(*n)).count();
    kept(a) == kept(b)
        && a.iter()
            .filter(|(n, _)| !ignored.contains_key(*n))
            .all(|(name, e)| {
                b.get(name)
                    .is_some_and(|f| f.enabled == e.enabled && f.spec.equivalent(&e.spec))
            })
}

/// One interpreter the configuration points at, with every path on its
/// way to the file (symlink hops, the file itself): any of them may be
/// re-pointed or upgraded, so each one's directory and name is watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpreterPaths {
    pub path: PathBuf,
    pub hops: Vec<PathBuf>,
}

/// What to watch: binfmt_misc, the search path and every directory an
/// interpreter or a hop to it lives in, the file names that may be
/// emulators (every `binary_names` template for every arch, and the
/// names of the interpreters and hops), and the config directories.
pub fn watch_targets(
    config: &Config,
    interpreters: &[InterpreterPaths],
    config_dirs: Vec<PathBuf>,
) -> Targets {
    let mut dirs: Vec<PathBuf> = config.search_path.value.clone();
    let mut names: HashSet<OsString> = crate::arch::ARCHES
        .iter()
        .flat_map(|a| {
            config
                .binary_names
                .value
                .iter()
                .map(|t| OsString::from(t.replace("{arch}", a.emulator)))
        })
        .collect();
    let mut note = |path: &Path| {
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
            names.insert(name.to_owned());
        }
    };
    for i in interpreters {
        note(&i.path);
        for hop in &i.hops {
            note(hop);
        }
    }
    Targets {
        binfmt: config.binfmt_path.value.clone(),
        emulator_dirs: dirs,
        emulator_names: names,
        config_dirs,
    }
}

/// The entries to leave alone in a pass: those given up on, and those
/// whose interpreter file is still open for writing.
pub fn holds(
    given_up: &BTreeMap<String, String>,
    interpreters: &[(String, PathBuf)],
    writing: impl Fn(&Path) -> bool,
) -> BTreeSet<String> {
    let mut holds: BTreeSet<String> = given_up.keys().cloned().collect();
    holds.extend(
        interpreters
            .iter()
            .filter(|(_, path)| writing(path))
            .map(|(name, _)| name.clone()),
    );
    holds
}

#[cfg(test)]
mod tests;
