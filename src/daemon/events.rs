//! What a file event in an emulator directory means: when a file being
//! written counts as complete. Pure: [`super::watch`] reads the inotify
//! event and looks at the file once, and hands both here as an
//! [`EmulatorEvent`] with the time; the answer says whether the emulator
//! files changed. Tested as event sequences (below), the way the daemon's
//! rules are tested as data.
//!
//! A regular file counts once it is complete: closed after writing
//! (CLOSE_WRITE), renamed into place (MOVED_TO), or linked (a symlink, a
//! second hard link); never on CREATE or MODIFY. Two writers need more:
//! `install` and package managers close a file and only then chmod it (a
//! pass between would refuse it as not executable), so a file closed
//! without any execute bit waits for its ATTRIB; and a file made with
//! `O_TMPFILE` and linked in is closed under the name `#INODE`. A writer
//! that never closes (killed) must not hold its entry forever: after a
//! quiet spell it counts as complete ([`Writes::expire`]).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a batch of events asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trigger {
    /// A configuration directory changed: reload.
    pub config: bool,
    /// An emulator or interpreter file changed.
    pub files: bool,
    /// binfmt_misc changed (maybe by qusd itself).
    pub kernel: bool,
    /// The set of watches must be rebuilt (a directory appeared or went,
    /// binfmt_misc was unmounted).
    pub rearm: bool,
    /// The inotify queue overflowed: events were lost, rescan everything.
    pub overflow: bool,
}

impl Trigger {
    pub fn any(&self) -> bool {
        self.config || self.files || self.kernel || self.rearm || self.overflow
    }

    pub fn merge(&mut self, other: Trigger) {
        self.config |= other.config;
        self.files |= other.files;
        self.kernel |= other.kernel;
        self.rearm |= other.rearm;
        self.overflow |= other.overflow;
    }

    /// Only binfmt_misc changed: possibly just the echo of qusd's own writes.
    pub fn kernel_only(&self) -> bool {
        self.kernel && !(self.config || self.files || self.rearm || self.overflow)
    }

    /// Words for the log.
    pub fn reasons(&self) -> String {
        let mut r = vec![];
        for (on, word) in [
            (self.overflow, "inotify overflow: full rescan"),
            (self.config, "configuration changed"),
            (self.files, "emulator files changed"),
            (self.kernel, "binfmt_misc changed"),
            (self.rearm, "watched directories changed"),
        ] {
            if on {
                r.push(word);
            }
        }
        r.join(", ")
    }
}

/// What to watch, computed from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub binfmt: PathBuf,
    pub emulator_dirs: Vec<PathBuf>,
    /// File names that may be emulators or interpreters.
    pub emulator_names: HashSet<OsString>,
    pub config_dirs: Vec<PathBuf>,
}

/// One event in an emulator directory, as the watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmulatorEvent {
    /// The watched directory itself was removed or moved away.
    DirGone,
    /// A close reported under `#INODE` in `dir`: an `O_TMPFILE` linked in
    /// under its real name, then closed.
    TmpfileClosed { dir: PathBuf, ino: u64 },
    /// Something happened to a file that may be an emulator.
    File {
        path: PathBuf,
        change: Change,
        /// What the file is as the watcher looked, after the event.
        now: FileNow,
    },
}

/// The inotify event on a file, by what it means here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Create,
    Modify,
    CloseWrite,
    /// Renamed into place, renamed away, or removed.
    MovedOrDeleted,
    Attrib,
}

/// What the file is when the watcher looks (one `lstat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileNow {
    /// Gone already: whatever happens next has its own event.
    Gone,
    Symlink,
    /// A regular file with more than one link (a hard link to a complete
    /// file).
    Linked,
    /// A regular file with one link.
    Regular {
        ino: u64,
        executable: bool,
    },
    /// A directory, a device, …: never an emulator.
    Other,
}

/// What an event means for the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// Nothing to do (yet).
    Nothing,
    /// An emulator file is complete, went or changed: a pass.
    FilesChanged,
    /// The directory went: a pass, and the watches rebuilt.
    DirGone,
    /// Closed without any execute bit: waiting for its chmod (said once
    /// in the log).
    AwaitingMode,
}

/// The files being written, and since when: what holds an entry back.
#[derive(Debug, Default)]
pub struct Writes {
    /// Emulator files being written (seen CREATE or MODIFY, not yet
    /// complete): the time of the last write seen, and the inode.
    in_progress: HashMap<PathBuf, (Instant, Option<u64>)>,
    /// Of those, the ones closed without any execute bit, waiting for
    /// their ATTRIB (or the quiet spell).
    awaiting_mode: HashSet<PathBuf>,
}

/// A file [`Writes::expire`] stopped waiting for, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub path: PathBuf,
    /// It was closed without execute permission and never chmodded.
    pub never_chmodded: bool,
}

impl Writes {
    /// Take in one event seen at `at`.
    pub fn feed(&mut self, event: EmulatorEvent, at: Instant) -> Meaning {
        let (path, change, now) = match event {
            EmulatorEvent::DirGone => return Meaning::DirGone,
            EmulatorEvent::TmpfileClosed { dir, ino } => return self.tmpfile_closed(&dir, ino),
            EmulatorEvent::File { path, change, now } => (path, change, now),
        };
        match (change, now) {
            // Symlinks and hard links appear complete, with no CLOSE_WRITE.
            (Change::Create, FileNow::Symlink | FileNow::Linked) => Meaning::FilesChanged,
            (Change::Create, FileNow::Regular { ino, .. }) => {
                self.in_progress.insert(path, (at, Some(ino)));
                Meaning::Nothing
            }
            (Change::Create, _) => Meaning::Nothing,
            (Change::Modify, now) => {
                self.awaiting_mode.remove(&path);
                let ino = match now {
                    FileNow::Regular { ino, .. } => Some(ino),
                    _ => None,
                };
                self.in_progress.insert(path, (at, ino));
                Meaning::Nothing
            }
            (
                Change::CloseWrite,
                FileNow::Regular {
                    ino,
                    executable: false,
                },
            ) => {
                self.in_progress.insert(path.clone(), (at, Some(ino)));
                self.awaiting_mode.insert(path);
                Meaning::AwaitingMode
            }
            (Change::CloseWrite | Change::MovedOrDeleted, _) => {
                self.done(&path);
                Meaning::FilesChanged
            }
            // The chmod after the close: complete now.
            (Change::Attrib, _) if self.awaiting_mode.contains(&path) => {
                self.done(&path);
                Meaning::FilesChanged
            }
            // chmod/chown of a complete file: the safety verdict may
            // change. (A file still being written waits for its close.)
            (Change::Attrib, _) if !self.in_progress.contains_key(&path) => Meaning::FilesChanged,
            (Change::Attrib, _) => Meaning::Nothing,
        }
    }

    /// The close of an `O_TMPFILE`: complete the file of that inode.
    fn tmpfile_closed(&mut self, dir: &Path, ino: u64) -> Meaning {
        let done: Vec<PathBuf> = self
            .in_progress
            .iter()
            .filter(|(p, (_, i))| p.parent() == Some(dir) && *i == Some(ino))
            .map(|(p, _)| p.clone())
            .collect();
        for p in &done {
            self.done(p);
        }
        if done.is_empty() {
            Meaning::Nothing
        } else {
            Meaning::FilesChanged
        }
    }

    fn done(&mut self, path: &Path) {
        self.in_progress.remove(path);
        self.awaiting_mode.remove(path);
    }

    /// Is the file at exactly this path being written?
    pub fn writing(&self, path: &Path) -> bool {
        self.in_progress.contains_key(path)
    }

    /// The files being written.
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.in_progress.keys()
    }

    /// Is any file being written?
    pub fn any(&self) -> bool {
        !self.in_progress.is_empty()
    }

    /// When the oldest quiet file counts as complete.
    pub fn next_expiry(&self, quiet: Duration) -> Option<Instant> {
        self.in_progress.values().map(|(t, _)| *t + quiet).min()
    }

    /// Files with no write for `quiet` count as complete: a writer that
    /// closes under another name or one that died must not hold an entry
    /// forever. Returns the files given up on.
    pub fn expire(&mut self, now: Instant, quiet: Duration) -> Vec<Expired> {
        let gone: Vec<PathBuf> = self
            .in_progress
            .iter()
            .filter(|(_, (last, _))| now >= *last + quiet)
            .map(|(p, _)| p.clone())
            .collect();
        gone.into_iter()
            .map(|path| {
                self.in_progress.remove(&path);
                let never_chmodded = self.awaiting_mode.remove(&path);
                Expired {
                    path,
                    never_chmodded,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_secs(2);

    fn file(path: &str, change: Change, now: FileNow) -> EmulatorEvent {
        EmulatorEvent::File {
            path: path.into(),
            change,
            now,
        }
    }

    fn regular(ino: u64, executable: bool) -> FileNow {
        FileNow::Regular { ino, executable }
    }

    /// Feed a sequence, one millisecond apart; the meanings in order.
    fn run(w: &mut Writes, t0: Instant, events: Vec<EmulatorEvent>) -> Vec<Meaning> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| w.feed(e, t0 + Duration::from_millis(i as u64)))
            .collect()
    }

    const EMU: &str = "/usr/bin/qemu-aarch64-static";

    #[test]
    fn sequences_by_writer() {
        use Change::*;
        use Meaning::*;
        let exe = regular(7, true);
        let plain = regular(7, false);
        // (writer, events, meanings, still being written at the end)
        let rows: Vec<(&str, Vec<EmulatorEvent>, Vec<Meaning>, bool)> = vec![
            (
                "cp: create, write, close",
                vec![
                    file(EMU, Create, exe),
                    file(EMU, Modify, exe),
                    file(EMU, CloseWrite, exe),
                ],
                vec![Nothing, Nothing, FilesChanged],
                false,
            ),
            (
                "install/dpkg: close without x, then chmod",
                vec![
                    file(EMU, Create, plain),
                    file(EMU, Modify, plain),
                    file(EMU, CloseWrite, plain),
                    file(EMU, Attrib, exe),
                ],
                vec![Nothing, Nothing, AwaitingMode, FilesChanged],
                false,
            ),
            (
                "closed without x and no chmod yet: held",
                vec![file(EMU, Create, plain), file(EMU, CloseWrite, plain)],
                vec![Nothing, AwaitingMode],
                true,
            ),
            (
                "a slow writer: modified again after an early close without x",
                vec![
                    file(EMU, CloseWrite, plain),
                    file(EMU, Modify, plain),
                    file(EMU, CloseWrite, exe),
                ],
                vec![AwaitingMode, Nothing, FilesChanged],
                false,
            ),
            (
                "rename into place (dpkg's .dpkg-new, apt, mv)",
                vec![file(EMU, MovedOrDeleted, exe)],
                vec![FilesChanged],
                false,
            ),
            (
                "a symlink made (alternatives, a link re-pointed)",
                vec![file(EMU, Create, FileNow::Symlink)],
                vec![FilesChanged],
                false,
            ),
            (
                "a hard link to a complete file",
                vec![file(EMU, Create, FileNow::Linked)],
                vec![FilesChanged],
                false,
            ),
            (
                "O_TMPFILE: linked in, closed as #INODE",
                vec![
                    file(EMU, Create, regular(42, true)),
                    EmulatorEvent::TmpfileClosed {
                        dir: "/usr/bin".into(),
                        ino: 42,
                    },
                ],
                vec![Nothing, FilesChanged],
                false,
            ),
            (
                "#INODE of another file, or in another directory: still written",
                vec![
                    file(EMU, Create, regular(42, true)),
                    EmulatorEvent::TmpfileClosed {
                        dir: "/usr/bin".into(),
                        ino: 43,
                    },
                    EmulatorEvent::TmpfileClosed {
                        dir: "/usr/local/bin".into(),
                        ino: 42,
                    },
                ],
                vec![Nothing, Nothing, Nothing],
                true,
            ),
            (
                "removed while being written",
                vec![
                    file(EMU, Create, exe),
                    file(EMU, MovedOrDeleted, FileNow::Gone),
                ],
                vec![Nothing, FilesChanged],
                false,
            ),
            (
                "chmod of a complete file: the verdict may change",
                vec![file(EMU, Attrib, plain)],
                vec![FilesChanged],
                false,
            ),
            (
                "chmod while being written: wait for the close",
                vec![file(EMU, Create, exe), file(EMU, Attrib, exe)],
                vec![Nothing, Nothing],
                true,
            ),
            (
                "created and gone before the look",
                vec![file(EMU, Create, FileNow::Gone)],
                vec![Nothing],
                false,
            ),
            (
                "the directory removed",
                vec![EmulatorEvent::DirGone],
                vec![Meaning::DirGone],
                false,
            ),
        ];
        for (writer, events, meanings, held) in rows {
            let mut w = Writes::default();
            assert_eq!(run(&mut w, Instant::now(), events), meanings, "{writer}");
            assert_eq!(w.writing(Path::new(EMU)), held, "{writer}");
        }
    }

    /// A file written in one directory holds back that path only, not a
    /// same-named file elsewhere in the search path.
    #[test]
    fn a_write_elsewhere_holds_only_its_own_path() {
        let mut w = Writes::default();
        w.feed(
            file(
                "/usr/local/bin/qemu-aarch64",
                Change::Create,
                regular(1, true),
            ),
            Instant::now(),
        );
        assert!(w.writing(Path::new("/usr/local/bin/qemu-aarch64")));
        assert!(!w.writing(Path::new("/usr/bin/qemu-aarch64")));
    }

    /// A writer that died (or closed under a name never seen) is taken as
    /// done after the quiet spell, counted from its last write.
    #[test]
    fn a_writer_that_never_closes_expires_after_the_quiet_spell() {
        let mut w = Writes::default();
        let t0 = Instant::now();
        w.feed(file(EMU, Change::Create, regular(1, true)), t0);
        w.feed(file(EMU, Change::Modify, regular(1, true)), t0 + QUIET / 2);
        assert_eq!(w.next_expiry(QUIET), Some(t0 + QUIET / 2 + QUIET));
        assert!(w.expire(t0 + QUIET, QUIET).is_empty(), "a write renewed it");
        let gone = w.expire(t0 + QUIET * 2, QUIET);
        assert_eq!(
            gone,
            vec![Expired {
                path: EMU.into(),
                never_chmodded: false
            }]
        );
        assert!(!w.any());
        assert_eq!(w.next_expiry(QUIET), None);

        // Closed without execute permission and never chmodded: said so.
        w.feed(file(EMU, Change::CloseWrite, regular(1, false)), t0);
        let gone = w.expire(t0 + QUIET, QUIET);
        assert!(gone[0].never_chmodded, "{gone:?}");
    }
}
