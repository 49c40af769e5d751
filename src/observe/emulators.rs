//! Finding interpreters and taking their facts: which file an arch's
//! emulator is, its first bytes, how it is linked, and the safety rules'
//! verdict on it. One open and one read per candidate file; what to make
//! of the facts is `plan::want`'s business.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::arch::{self, Arch};
use crate::binfmt::elf::{self, Head, Linking};
use crate::config::Config;
use crate::model::{Candidate, Identity, InterpreterCheck};
use crate::safety;

/// Find the emulator for an arch: the per-arch override, else the
/// statically linked `binary_names` match in `search_path` (the newest
/// QEMU of them when there are several, see [`Choice`]), else the first
/// match at all (judged later). Static first: a dynamic `qemu-aarch64`
/// early in the path must not shadow a `qemu-aarch64-static` later in it
/// (Ubuntu's qemu-user-binfmt).
fn find_emulator(config: &Config, arch: &Arch, choice: &Choice) -> Option<PathBuf> {
    find(config, arch, choice).map(|f| f.path)
}

/// The emulator for an arch with its facts, if there is one.
pub fn arch_candidate(config: &Config, arch: &Arch, choice: &Choice) -> Option<Candidate> {
    let found = find(config, arch, choice)?;
    Some(candidate(found.path, found.head, choice.dirs))
}

/// The facts of an interpreter file. `head`: the look finding it took
/// already, if any (else it is taken now).
pub fn candidate(path: PathBuf, head: Option<Head>, dirs: &safety::DirCache) -> Candidate {
    let head = head.or_else(|| elf::read_head(&path).ok());
    let check = match safety::check_interpreter(&path, dirs) {
        Ok((resolved, meta)) => InterpreterCheck::Safe {
            resolved,
            identity: identity_from(&meta),
        },
        // Judged missing only when the checks fail: one look, not two.
        Err(_) if !path.exists() => InterpreterCheck::Missing,
        Err(refusal) => InterpreterCheck::Refused(refusal.0),
    };
    Candidate {
        loader: head.as_ref().and_then(|h| h.loader()).map(str::to_string),
        head: head.map(|h| h.bytes),
        path,
        check,
    }
}

/// Every interpreter path the configuration points at now, by entry name:
/// the emulator found for each arch and each custom entry's interpreter.
/// (What the daemon watches, and what it holds while a file is written.)
pub fn interpreters(
    config: &Config,
    versions: &crate::observe::version::Memo,
) -> Vec<(String, PathBuf)> {
    let dirs = safety::DirCache::default();
    let choice = Choice {
        dirs: &dirs,
        versions,
    };
    let mut all = Vec::new();
    for a in arch::ARCHES {
        if let Some(path) = find_emulator(config, a, &choice) {
            all.push((config.entry_name(a.name), path));
        }
    }
    for (name, e) in &config.entries {
        all.push((name.clone(), e.spec.interpreter.clone()));
    }
    all
}

/// Identity of the file a path resolves to (symlinks followed).
pub fn identity_of(path: &Path) -> std::io::Result<Identity> {
    Ok(identity_from(&std::fs::metadata(path)?))
}

pub(super) fn identity_from(m: &std::fs::Metadata) -> Identity {
    Identity {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    }
}

/// An emulator found for an arch, with the look taken while finding it
/// (`None` for a configured path, or a file that could not be read).
struct Found {
    path: PathBuf,
    head: Option<Head>,
}

fn find(config: &Config, arch: &Arch, choice: &Choice) -> Option<Found> {
    if let Some(path) = config
        .arch
        .get(arch.name)
        .and_then(|o| o.interpreter.as_ref())
    {
        return Some(Found {
            path: path.value.clone(),
            head: None,
        });
    }
    let mut statics = Vec::new();
    let mut first = None;
    for dir in &config.search_path.value {
        for template in &config.binary_names.value {
            let path = dir.join(template.replace("{arch}", arch.emulator));
            // One open per candidate: a missing one costs just that.
            match elf::read_head(&path) {
                Ok(head) if head.linking == Some(Linking::Static) => statics.push(Found {
                    path,
                    head: Some(head),
                }),
                Ok(head) => {
                    first.get_or_insert(Found {
                        path,
                        head: Some(head),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Unreadable, a loop, …: a candidate if it is there at
                // all, for the checks to refuse with the reason.
                Err(_) if path.exists() => {
                    first.get_or_insert(Found { path, head: None });
                }
                Err(_) => {}
            }
        }
    }
    if statics.len() > 1 {
        let pick = choice.newest(&statics);
        return Some(statics.swap_remove(pick));
    }
    statics.pop().or(first)
}

/// What choosing between several static emulators for one arch needs:
/// the checks' directory cache (only an emulator that passes them is run
/// to ask its version) and the versions asked so far.
pub struct Choice<'a> {
    pub dirs: &'a safety::DirCache,
    pub versions: &'a crate::observe::version::Memo,
}

impl Choice<'_> {
    /// The newest QEMU among `found` (see [`crate::observe::version::newest`]): a
    /// channel package's 11.1 beside the distribution's 7.2 wins wherever
    /// it is in `search_path`. One that fails the checks is never run and
    /// ranks last.
    fn newest(&self, found: &[Found]) -> usize {
        let versions: Vec<_> = found
            .iter()
            .map(|f| {
                let (_, meta) = safety::check_interpreter(&f.path, self.dirs).ok()?;
                let v = self.versions.of(&f.path, &identity_from(&meta))?;
                crate::observe::version::numbers(&v)
            })
            .collect();
        crate::observe::version::newest(&versions)
    }
}
