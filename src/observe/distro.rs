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

/// Of the distribution's entries, those whose interpreter resolves to the
/// very file qus wants for that name (device and inode: Debian's
/// `/usr/libexec/qemu-binfmt/ARCH-binfmt-P` is a link to the emulator qus
/// finds in `/usr/bin`) and passes the same safety rules. Only a stat per
/// distribution entry qus wants; the planner decides from magic and flags
/// whether it is adopted as it is.
pub fn same_file_as_wanted(
    distro: &BTreeSet<String>,
    kernel: &KernelEntries,
    wanted: &Wanted,
    dirs: &crate::safety::DirCache,
) -> BTreeSet<String> {
    wanted
        .items
        .iter()
        .filter(|w| distro.contains(&w.name))
        .filter_map(|w| {
            let desired = w.want.as_ref().ok()?;
            let entry = kernel.get(&w.name)?;
            let same = super::emulators::identity_of(&entry.spec.interpreter)
                .is_ok_and(|id| id.dev == desired.identity.dev && id.ino == desired.identity.ino);
            (same && crate::safety::check_interpreter(&entry.spec.interpreter, dirs).is_ok())
                .then(|| w.name.clone())
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::entry::parse_register_line;
    use crate::model::{Desired, Identity, Others, Want};

    fn entry(line: &str) -> (String, KernelEntry) {
        let (name, spec) = parse_register_line(line).expect("register line");
        (
            name,
            KernelEntry {
                enabled: true,
                spec,
            },
        )
    }

    fn wanting(name: &str, line: &str) -> Wanted {
        let (_, spec) = parse_register_line(line).expect("register line");
        Wanted {
            items: vec![Want {
                name: name.into(),
                arch: Some("aarch64".into()),
                want: Ok(Desired {
                    spec,
                    identity: Identity {
                        dev: 0,
                        ino: 0,
                        size: 0,
                        mtime_ns: 0,
                    },
                }),
                others: Others::Yield,
            }],
        }
    }

    /// Roots point at a fixture tree: an entry is the distribution's when
    /// its interpreter is one of the distribution's wrappers, or when a
    /// binfmt.d file there registers that name with that interpreter.
    #[test]
    fn distribution_entries_are_found_under_the_given_roots() {
        let tree = tempfile::tempdir().expect("fixture tree");
        let binfmt_d = tree.path().join("usr/lib/binfmt.d");
        std::fs::create_dir_all(&binfmt_d).expect("binfmt.d");
        let shipped = ":qemu-aarch64:M::\\x7fELF::/usr/bin/qemu-aarch64-static:F";
        std::fs::write(binfmt_d.join("qemu-aarch64.conf"), format!("{shipped}\n")).expect("conf");
        let wrappers = tree.path().join("usr/libexec/qemu-binfmt");
        let roots = Roots {
            distro_binfmt_d: vec![binfmt_d.clone(), tree.path().join("lib/binfmt.d")],
            distro_interpreter_dirs: vec![wrappers.clone()],
            ..Roots::host()
        };
        let wrapper_line = format!(
            ":qemu-arm:M::\\x7fELF::{}/arm-binfmt-P:P",
            wrappers.display()
        );
        let kernel: KernelEntries = [
            entry(shipped),
            entry(&wrapper_line),
            entry(":qemu-riscv64:M::\\x7fELF::/opt/other/qemu-riscv64:F"),
        ]
        .into_iter()
        .collect();
        let ours = ":qemu-aarch64:M::\\x7fELF::/usr/local/bin/qemu-aarch64-static:F";
        let found = distro_entries(
            &kernel,
            &OwnedEntries::new(),
            &wanting("qemu-aarch64", ours),
            &roots,
        );
        let found: Vec<&str> = found.iter().map(String::as_str).collect();
        assert_eq!(found, ["qemu-aarch64", "qemu-arm"]);
        // Nothing in question: the binfmt.d files are not read at all.
        let found = distro_entries(&kernel, &OwnedEntries::new(), &Wanted::default(), &roots);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["qemu-arm"]);
    }
}
