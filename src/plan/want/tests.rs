//! The want rules as data: configurations from TOML text, candidates and
//! host facts written out by hand. No file is read.

use std::path::{Path, PathBuf};

use super::*;
use crate::model::{Identity, NativeVerdicts};

fn config(toml: &str) -> Config {
    crate::config::load_str(Path::new("/etc/qus.d/50-test.toml"), toml).expect("test config")
}

fn aarch64() -> &'static Arch {
    crate::arch::find("aarch64").expect("aarch64 in the table")
}

/// An aarch64 ELF header: what the aarch64 entry's magic catches.
fn aarch64_head() -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    h[16] = 2; // ET_EXEC
    h[18] = 0xb7; // EM_AARCH64
    h
}

/// An x86_64 ELF header: a host program on a typical CI machine.
fn x86_64_head() -> Vec<u8> {
    let mut h = aarch64_head();
    h[18] = 0x3e;
    h
}

const IDENTITY: Identity = Identity {
    dev: 1,
    ino: 2,
    size: 3,
    mtime_ns: 4,
};

fn safe(path: &str, head: Vec<u8>, loader: Option<&str>) -> Candidate {
    Candidate {
        path: PathBuf::from(path),
        head: Some(head),
        loader: loader.map(str::to_string),
        check: InterpreterCheck::Safe {
            resolved: PathBuf::from(path),
            identity: IDENTITY,
        },
    }
}

fn static_emulator() -> Candidate {
    safe("/usr/bin/qemu-aarch64-static", x86_64_head(), None)
}

fn host(heads: &[Vec<u8>]) -> HostView<'_> {
    HostView {
        kernel_has_p_bit: true,
        host_heads: heads,
    }
}

fn want(config: &Config, overrides: &Overrides, candidate: Option<&Candidate>) -> Want {
    let own = vec![x86_64_head()];
    arch_want(
        config,
        &NativeVerdicts::new(),
        overrides,
        aarch64(),
        candidate,
        host(&own),
    )
}

fn skip_reason(w: &Want) -> String {
    match &w.want {
        Ok(_) => panic!("{} is wanted, expected a skip", w.name),
        Err(skip) => format!("{skip:?}"),
    }
}

#[test]
fn enabled_true_beats_exclude_and_targets() {
    let c = config(
        "[qemu]\ntargets = [\"riscv64\"]\nexclude = [\"aarch64\"]\n\
         [qemu.arch.aarch64]\nenabled = true\n",
    );
    let w = want(&c, &Overrides::default(), Some(&static_emulator()));
    assert!(w.want.is_ok(), "{:?}", w.want);
}

#[test]
fn exclude_beats_targets_and_names_its_file() {
    let c = config("[qemu]\ntargets = [\"aarch64\"]\nexclude = [\"aarch64\"]\n");
    let w = want(&c, &Overrides::default(), Some(&static_emulator()));
    let why = skip_reason(&w);
    assert!(
        why.contains("qemu.exclude") && why.contains("50-test.toml"),
        "{why}"
    );
}

#[test]
fn enabled_false_names_its_file() {
    let c = config("[qemu.arch.aarch64]\nenabled = false\n");
    let why = skip_reason(&want(&c, &Overrides::default(), Some(&static_emulator())));
    assert!(
        why.contains("enabled = false") && why.contains("50-test.toml"),
        "{why}"
    );
}

#[test]
fn command_line_targets_replace_the_configured_ones() {
    let c = config("[qemu]\ntargets = [\"riscv64\"]\n");
    let none = Overrides::default();
    assert!(skip_reason(&want(&c, &none, Some(&static_emulator()))).contains("qemu.targets"));
    let named = Overrides {
        targets: Some(vec!["aarch64".into()]),
        flags: None,
    };
    assert!(want(&c, &named, Some(&static_emulator())).want.is_ok());
    let all = Overrides {
        targets: Some(vec!["all".into()]),
        flags: None,
    };
    assert!(want(&c, &all, Some(&static_emulator())).want.is_ok());
}

#[test]
fn a_native_arch_is_skipped_with_the_reason() {
    let c = config("");
    let native: NativeVerdicts = [("aarch64".to_string(), Native::Yes("own arch".into()))].into();
    let skip = arch_skip(&c, &native, &Overrides::default(), aarch64());
    assert_eq!(skip, Some(Skip::Native("own arch".into())));
    let foreign: NativeVerdicts = [("aarch64".to_string(), Native::No("other".into()))].into();
    assert_eq!(
        arch_skip(&c, &foreign, &Overrides::default(), aarch64()),
        None
    );
    // Native is said even where targets leaves the arch out; an explicit
    // exclude still says exclude.
    let narrow = config("[qemu]\ntargets = [\"riscv64\"]\n");
    let skip = arch_skip(&narrow, &native, &Overrides::default(), aarch64());
    assert_eq!(skip, Some(Skip::Native("own arch".into())));
    let excluded = config("[qemu]\nexclude = [\"aarch64\"]\n");
    let skip = arch_skip(&excluded, &native, &Overrides::default(), aarch64());
    assert!(matches!(skip, Some(Skip::Excluded(_))), "{skip:?}");
}

#[test]
fn flags_come_from_the_command_line_then_the_arch_then_the_global_setting() {
    let c = config("[qemu]\nflags = \"F\"\n[qemu.arch.aarch64]\nflags = \"OC\"\n");
    let riscv = crate::arch::find("riscv64").expect("riscv64");
    let none = Overrides::default();
    assert_eq!(arch_flags(&c, &none, riscv, true).to_string(), "F");
    assert_eq!(arch_flags(&c, &none, aarch64(), true).to_string(), "OC");
    let cli = Overrides {
        targets: None,
        flags: Some(Flags::parse("PF").expect("flags")),
    };
    assert_eq!(arch_flags(&c, &cli, aarch64(), true).to_string(), "PF");
    assert_eq!(arch_flags(&c, &cli, aarch64(), false).to_string(), "F");
}

#[test]
fn p_is_dropped_only_before_5_12() {
    let pf = Flags::parse("PF").expect("flags");
    let (old, dropped) = flags_for_kernel(pf, false);
    assert!(dropped && !old.preserve_argv0 && old.fix_binary);
    let (new, dropped) = flags_for_kernel(pf, true);
    assert!(!dropped && new == pf);
    let f = Flags::parse("F").expect("flags");
    assert_eq!(flags_for_kernel(f, false), (f, false));
}

#[test]
fn a_dynamic_emulator_is_refused_under_f_unless_allowed() {
    let dynamic = safe(
        "/usr/bin/qemu-aarch64",
        x86_64_head(),
        Some("/lib64/ld-linux-x86-64.so.2"),
    );
    let c = config("");
    let why = skip_reason(&want(&c, &Overrides::default(), Some(&dynamic)));
    assert!(
        why.contains("dynamically linked") && why.contains("ld-linux"),
        "{why}"
    );
    let allowed = config("[qemu.arch.aarch64]\nallow_dynamic = true\n");
    assert!(want(&allowed, &Overrides::default(), Some(&dynamic))
        .want
        .is_ok());
    let without_f = config("[qemu]\nflags = \"P\"\n");
    assert!(want(&without_f, &Overrides::default(), Some(&dynamic))
        .want
        .is_ok());
}

#[test]
fn an_entry_catching_its_own_interpreter_is_refused_even_when_host_programs_may_be_caught() {
    // On an aarch64 host (an aarch64 program is one the host runs).
    let looping = safe("/opt/qemu-aarch64", aarch64_head(), None);
    let c = config("[qemu.arch.aarch64]\ncatch_host_programs = true\n");
    let own = vec![aarch64_head()];
    let w = arch_want(
        &c,
        &NativeVerdicts::new(),
        &Overrides::default(),
        aarch64(),
        Some(&looping),
        host(&own),
    );
    let why = skip_reason(&w);
    assert!(
        why.contains("its own interpreter /opt/qemu-aarch64"),
        "{why}"
    );
}

#[test]
fn an_entry_catching_the_host_programs_needs_catch_host_programs() {
    let own = vec![aarch64_head()]; // an aarch64 host
                                    // A wrapper script as the emulator: it does not catch itself.
    let static_emulator = || {
        safe(
            "/usr/bin/qemu-aarch64-static",
            b"#!/bin/sh\nexec x\n".to_vec(),
            None,
        )
    };
    let c = config("");
    let w = arch_want(
        &c,
        &NativeVerdicts::new(),
        &Overrides::default(),
        aarch64(),
        Some(&static_emulator()),
        host(&own),
    );
    assert!(skip_reason(&w).contains("host's own programs"));
    let allowed = config("[qemu.arch.aarch64]\ncatch_host_programs = true\n");
    let w = arch_want(
        &allowed,
        &NativeVerdicts::new(),
        &Overrides::default(),
        aarch64(),
        Some(&static_emulator()),
        host(&own),
    );
    assert!(w.want.is_ok(), "{:?}", w.want);
}

#[test]
fn missing_and_refused_interpreters_say_which() {
    let c = config("");
    let w = want(&c, &Overrides::default(), None);
    assert!(matches!(&w.want, Err(Skip::NoInterpreter(why)) if why.starts_with("no qemu-aarch64")));
    let missing = Candidate {
        check: InterpreterCheck::Missing,
        ..static_emulator()
    };
    let w = want(&c, &Overrides::default(), Some(&missing));
    assert!(matches!(&w.want, Err(Skip::NoInterpreter(why)) if why.contains("does not exist")));
    let refused = Candidate {
        check: InterpreterCheck::Refused("group-writable".into()),
        ..static_emulator()
    };
    let w = want(&c, &Overrides::default(), Some(&refused));
    assert_eq!(w.want, Err(Skip::Refused("group-writable".into())));
}

#[test]
fn a_wanted_arch_gets_the_table_magic_and_the_found_identity() {
    let c = config("[qemu]\nothers = \"override\"\n");
    let w = want(&c, &Overrides::default(), Some(&static_emulator()));
    let desired = w.want.expect("wanted");
    assert_eq!(w.name, "qemu-aarch64");
    assert_eq!(w.others, Others::Override);
    assert_eq!(desired.identity, IDENTITY);
    assert_eq!(
        desired.spec.interpreter,
        PathBuf::from("/usr/bin/qemu-aarch64-static")
    );
    assert!(desired.spec.matcher.catches(&aarch64_head()));
    assert!(!desired.spec.matcher.catches(&x86_64_head()));
}

#[test]
fn custom_entries_never_yield_and_a_disabled_one_says_where() {
    let c = config(
        "[entry.wine]\ninterpreter = \"/usr/bin/wine\"\nmagic = \"MZ\"\n\
         [entry.off]\ninterpreter = \"/usr/bin/off\"\nmagic = \"XY\"\nenabled = false\n",
    );
    let own = vec![x86_64_head()];
    let wine = c.entries.get("wine").expect("wine");
    let found = safe("/usr/bin/wine", x86_64_head(), None);
    let w = custom_want("wine", wine, Some(&found), host(&own));
    assert!(w.want.is_ok() && w.others == Others::Override && w.arch.is_none());
    let off = c.entries.get("off").expect("off");
    let w = custom_want("off", off, None, host(&own));
    assert!(skip_reason(&w).contains("disabled in") && skip_reason(&w).contains("50-test.toml"));
}

/// A custom entry whose magic matches non-PIE (`ET_EXEC`) x86-64 programs
/// breaks every such native program although this executable (a static
/// PIE) does not match it: both ELF types of the host's header count.
#[test]
fn a_custom_entry_catching_non_pie_host_programs_is_refused() {
    let c = config(
        "[entry.exec64]\ninterpreter = \"/usr/bin/wine\"\n\
         magic = '\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x3e\\x00'\n",
    );
    let entry = c.entries.get("exec64").expect("entry");
    let mut pie = x86_64_head();
    pie[16] = 3; // ET_DYN: this executable, a static PIE
    let found = safe("/usr/bin/wine", aarch64_head(), None);
    let only_pie = vec![pie.clone()];
    let w = custom_want("exec64", entry, Some(&found), host(&only_pie));
    assert!(w.want.is_ok(), "the old check saw only the PIE header");
    let both = crate::binfmt::elf::both_types(&pie);
    let w = custom_want("exec64", entry, Some(&found), host(&both));
    assert!(
        skip_reason(&w).contains("host's own programs"),
        "{:?}",
        w.want
    );
}

#[test]
fn only_programs_the_host_runs_are_emulators() {
    let c = config("");
    let reason = |head: &[u8]| {
        let found = safe("/usr/bin/qemu-aarch64-static", head.to_vec(), None);
        match want(&c, &Overrides::default(), Some(&found)).want {
            Ok(_) => "wanted".to_string(),
            Err(skip) => format!("{skip:?}"),
        }
    };
    assert!(reason(b"").contains("is empty"), "{}", reason(b""));
    assert!(reason(b"just some text\n").contains("neither ELF nor a #! script"));
    let mut s390x = x86_64_head();
    s390x[5] = 2; // big-endian: e_type and e_machine too
    s390x[16] = 0;
    s390x[17] = 2;
    s390x[18] = 0;
    s390x[19] = 0x16;
    assert!(
        reason(&s390x).contains("a program for s390x, not for this host"),
        "{}",
        reason(&s390x)
    );
    assert!(reason(&aarch64_head()).contains("a program for aarch64"));
    let mut shared_object = x86_64_head();
    shared_object[16] = 1; // ET_REL
    assert!(reason(&shared_object).contains("not an executable"));
    // The host's own machine, as ET_EXEC or ET_DYN, and a #! wrapper: fine.
    assert_eq!(reason(&x86_64_head()), "wanted");
    let mut pie = x86_64_head();
    pie[16] = 3;
    assert_eq!(reason(&pie), "wanted");
    assert_eq!(
        reason(b"#!/bin/sh\nQEMU_CPU=max exec qemu \"$@\"\n"),
        "wanted"
    );
    // An arch the kernel loads natively (i386 on x86_64) runs too.
    let mut i386 = x86_64_head();
    i386[4] = 1;
    i386[18] = 3;
    let native: NativeVerdicts = [("i386".to_string(), Native::Yes("loads".into()))].into();
    let own = vec![x86_64_head()];
    let found = safe("/usr/bin/qemu-aarch64-static", i386.clone(), None);
    let w = arch_want(
        &c,
        &native,
        &Overrides::default(),
        aarch64(),
        Some(&found),
        host(&own),
    );
    assert!(w.want.is_ok(), "{w:?}");
    let w = arch_want(
        &c,
        &NativeVerdicts::new(),
        &Overrides::default(),
        aarch64(),
        Some(&found),
        host(&own),
    );
    assert!(skip_reason(&w).contains("a program for i386"), "{w:?}");
}

/// Safety round four, point 9: a custom entry for `#!` or for `.sh` took
/// every script the host runs; refused unless catch_host_programs.
#[test]
fn a_custom_entry_catching_the_hosts_scripts_is_refused() {
    let c = config(
        "[entry.hashbang]\ninterpreter = \"/usr/bin/wine\"\nmagic = \"#!\"\n\
         [entry.shell]\ninterpreter = \"/usr/bin/wine\"\ntype = \"extension\"\nextension = \"sh\"\n\
         [entry.python]\ninterpreter = \"/usr/bin/wine\"\ntype = \"extension\"\nextension = \"pyz\"\n\
         [entry.allowed]\ninterpreter = \"/usr/bin/wine\"\nmagic = \"#!\"\ncatch_host_programs = true\n",
    );
    let own = vec![x86_64_head()];
    let found = safe("/usr/bin/wine", x86_64_head(), None);
    for name in ["hashbang", "shell"] {
        let w = custom_want(
            name,
            c.entries.get(name).expect(name),
            Some(&found),
            host(&own),
        );
        assert!(
            skip_reason(&w).contains("host's own scripts"),
            "{name}: {:?}",
            w.want
        );
    }
    for name in ["python", "allowed"] {
        let w = custom_want(
            name,
            c.entries.get(name).expect(name),
            Some(&found),
            host(&own),
        );
        assert!(w.want.is_ok(), "{name}: {:?}", w.want);
    }
}
