//! The built-in arch table against Debian's own binfmt.d files and against
//! the real foreign programs the end-to-end tests run.

use std::fs;
use std::path::Path;

use qus::arch::{self, ARCHES};
use qus::binfmt::entry::parse_register_line;
use qus::binfmt::Matcher;
use qus::probe::PROBES;

/// Debian's `/usr/lib/binfmt.d/qemu-<arch>.conf` (from qemu-user-static):
/// every arch both have must agree on every bit both masks test. Where the
/// masks differ, print it: that is where one side matches more binaries.
#[test]
fn agrees_with_debians_binfmt_d_files() {
    let dir = Path::new("/usr/lib/binfmt.d");
    let files: Vec<_> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("qemu-") && n.ends_with(".conf"))
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !files.is_empty(),
        "no /usr/lib/binfmt.d/qemu-*.conf: install them with `apt-get install -y qemu-user-static`"
    );
    let mut compared = 0;
    for path in files {
        let text = fs::read_to_string(&path).expect("read conf");
        let line = text
            .lines()
            .find(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with(';'))
            .expect("a register line");
        let (name, spec) =
            parse_register_line(line).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let arch_name = name.trim_start_matches("qemu-");
        // Every qemu format Debian registers must be one we know.
        let ours = arch::find(arch_name)
            .unwrap_or_else(|| panic!("{}: {arch_name} is not in our table", path.display()));
        let Matcher::Magic {
            offset,
            magic,
            mask,
        } = spec.matcher
        else {
            panic!("{}: not a magic entry", path.display());
        };
        assert_eq!(offset, 0, "{arch_name}: offset");
        let mask = mask.unwrap_or_else(|| vec![0xff; magic.len()]);
        let n = magic.len().min(ours.magic.len());
        for i in 0..n {
            let both = mask[i] & ours.mask[i];
            assert_eq!(
                magic[i] & both,
                ours.magic[i] & both,
                "{arch_name}: byte {i} disagrees with {}",
                path.display()
            );
            if mask[i] != ours.mask[i] {
                println!(
                    "{arch_name}: byte {i}: Debian mask {:#04x}, ours {:#04x}",
                    mask[i], ours.mask[i]
                );
            }
        }
        if magic.len() != ours.magic.len() {
            println!(
                "{arch_name}: Debian tests {} bytes, we test {}",
                magic.len(),
                ours.magic.len()
            );
        }
        compared += 1;
    }
    assert!(compared >= 25, "compared only {compared} arches");
}

/// Each probe program matches exactly one entry of the table: its own.
#[test]
fn each_foreign_program_matches_only_its_own_arch() {
    assert!(PROBES.len() >= 5);
    for probe in PROBES {
        let matching: Vec<&str> = ARCHES
            .iter()
            .filter(|a| a.matches(probe.program))
            .map(|a| a.name)
            .collect();
        assert_eq!(matching, [probe.arch], "probe {}", probe.arch);
        assert!(
            probe.program.len() < 1024,
            "probe {} is not tiny",
            probe.arch
        );
    }
}
