//! Which kernel entries the distribution registered: what
//! `takeover = "distro"` may replace.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::host::Roots;
use crate::binfmt::{KernelEntries, KernelEntry};
use crate::model::{OwnedEntries, Wanted};

/// Kernel entries the distribution registered: the interpreter is one of
/// its QEMU wrappers, or a binfmt.d file it ships registers exactly this
/// name with this interpreter (as `systemd-binfmt` does at boot).
///
/// Only asked for the names `takeover = "distro"` could be about: entries
/// qus wants to register that are not what qus registered there itself.
pub fn distro_entries(
    kernel: &KernelEntries,
    owned: &OwnedEntries,
    wanted: &Wanted,
    roots: &Roots,
) -> BTreeSet<String> {
    let by_dir = |e: &KernelEntry| {
        roots
            .distro_interpreter_dirs
            .iter()
            .any(|d| e.spec.interpreter.starts_with(d))
    };
    let mut distro: BTreeSet<String> = kernel
        .iter()
        .filter(|(_, e)| by_dir(e))
        .map(|(name, _)| name.clone())
        .collect();
    let ours_unchanged =
        |name: &str, e: &KernelEntry| owned.get(name).is_some_and(|o| o.spec.equivalent(&e.spec));
    let to_register: BTreeSet<&str> = wanted
        .items
        .iter()
        .filter(|w| w.want.is_ok())
        .map(|w| w.name.as_str())
        .collect();
    let in_question = |name: &String, e: &KernelEntry| {
        !distro.contains(name) && !ours_unchanged(name, e) && to_register.contains(name.as_str())
    };
    // The binfmt.d files only matter for those: none at all on a cold
    // start or a re-run, where reading them cost more than registering.
    if !kernel.iter().any(|(name, e)| in_question(name, e)) {
        return distro;
    }
    let shipped = shipped_entries(&roots.distro_binfmt_d);
    distro.extend(
        kernel
            .iter()
            .filter(|(name, e)| shipped.get(*name) == Some(&e.spec.interpreter))
            .map(|(name, _)| name.clone()),
    );
    distro
}

/// The entries the distribution's binfmt.d files register: name →
/// interpreter.
fn shipped_entries(dirs: &[PathBuf]) -> BTreeMap<String, PathBuf> {
    let mut shipped = BTreeMap::new();
    let mut seen = Vec::new();
    for dir in dirs {
        // `/lib` is a link to `/usr/lib` on merged-/usr systems: one read.
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        if seen.contains(&(meta.dev(), meta.ino())) {
            continue;
        }
        seen.push((meta.dev(), meta.ino()));
        let Ok(files) = std::fs::read_dir(dir) else {
            continue;
        };
        for file in files.flatten() {
            let Ok(text) = std::fs::read_to_string(file.path()) else {
                continue;
            };
            for line in text.lines().filter(|l| l.starts_with(':')) {
                if let Ok((name, spec)) = crate::binfmt::entry::parse_register_line(line) {
                    shipped.insert(name, spec.interpreter);
                }
            }
        }
    }
    shipped
}
