//! Property tests (proptest) for everything that parses outside input:
//! `\xHH` escapes, register strings, the kernel's entry files (including
//! lines and flags a newer kernel may add), and TOML drop-ins. They run in
//! CI (256 cases each by default; `PROPTEST_CASES=100000` for a long run).
//! Failing cases proptest finds are saved under `tests/properties.proptest-regressions`
//! and replayed first on every run.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use qus::binfmt::entry::{parse_entry_file, parse_register_line, EntrySpec, Flags, Matcher};
use qus::escape;

fn flags() -> impl Strategy<Value = Flags> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(p, o, c, f)| Flags {
        preserve_argv0: p,
        open_binary: o,
        credentials: c,
        fix_binary: f,
    })
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._+@-]{1,40}".prop_filter("reserved", |n| {
        !matches!(n.as_str(), "." | ".." | "register" | "status")
    })
}

fn interpreter() -> impl Strategy<Value = PathBuf> {
    "(/[A-Za-z0-9._+-]{1,20}){1,4}".prop_map(PathBuf::from)
}

fn matcher() -> impl Strategy<Value = Matcher> {
    prop_oneof![
        (
            0u32..64,
            proptest::collection::vec(any::<u8>(), 1..64),
            any::<bool>()
        )
            .prop_flat_map(|(offset, magic, with_mask)| {
                let n = magic.len();
                proptest::collection::vec(any::<u8>(), n).prop_map(move |mask| Matcher::Magic {
                    offset,
                    magic: magic.clone(),
                    mask: with_mask.then_some(mask),
                })
            }),
        "[A-Za-z0-9._-]{1,20}".prop_map(Matcher::Extension),
    ]
}

fn spec() -> impl Strategy<Value = EntrySpec> {
    (matcher(), interpreter(), flags()).prop_map(|(matcher, interpreter, flags)| EntrySpec {
        matcher,
        interpreter,
        flags,
    })
}

/// What the kernel prints for a registration (fs/binfmt_misc.c), with
/// optional extra lines and flags a newer kernel might add.
fn kernel_text(spec: &EntrySpec, enabled: bool, extra_flag: bool, extra_line: bool) -> String {
    let mut t = String::new();
    t.push_str(if enabled { "enabled\n" } else { "disabled\n" });
    t.push_str(&format!("interpreter {}\n", spec.interpreter.display()));
    let mut f = spec.flags.normalized().to_string();
    if extra_flag {
        f.push('Z');
    }
    t.push_str(&format!("flags: {f}\n"));
    match &spec.matcher {
        Matcher::Magic {
            offset,
            magic,
            mask,
        } => {
            let masked: Vec<u8> = match mask {
                Some(m) => magic.iter().zip(m).map(|(a, b)| a & b).collect(),
                None => magic.clone(),
            };
            t.push_str(&format!(
                "offset {offset}\nmagic {}\n",
                escape::to_hex(&masked)
            ));
            if let Some(m) = mask {
                t.push_str(&format!("mask {}\n", escape::to_hex(m)));
            }
        }
        Matcher::Extension(e) => t.push_str(&format!("extension .{e}\n")),
    }
    if extra_line {
        t.push_str("future-field 42\n");
    }
    t
}

proptest! {
    #[test]
    fn escapes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert_eq!(escape::decode(&escape::escape_all(&bytes)).unwrap(), bytes.clone());
        prop_assert_eq!(escape::decode(&escape::escape_readable(&bytes)).unwrap(), bytes.clone());
        prop_assert_eq!(escape::from_hex(&escape::to_hex(&bytes)).unwrap(), bytes);
    }

    #[test]
    fn decoding_arbitrary_text_never_panics(text in "\\PC*") {
        let _ = escape::decode(&text);
        let _ = escape::from_hex(&text);
    }

    #[test]
    fn register_lines_round_trip(name in name(), spec in spec()) {
        prop_assume!(spec.validate(&name).is_ok());
        let line = spec.register_line(&name);
        let (n, parsed) = parse_register_line(&line).unwrap();
        prop_assert_eq!(n, name);
        prop_assert_eq!(parsed, spec);
        // One write, no separator byte outside the fields' own positions.
        prop_assert_eq!(line.matches(':').count(), 7);
        prop_assert!(!line.contains('\n'));
    }

    #[test]
    fn kernel_entry_files_parse_back(spec in spec(), enabled in any::<bool>(),
                                     extra_flag in any::<bool>(), extra_line in any::<bool>()) {
        let text = kernel_text(&spec, enabled, extra_flag, extra_line);
        let entry = parse_entry_file(&text).unwrap();
        prop_assert_eq!(entry.enabled, enabled);
        prop_assert!(entry.spec.equivalent(&spec), "{:?} vs {:?}", entry.spec, spec);
    }

    #[test]
    fn arbitrary_entry_files_never_panic(text in "\\PC*") {
        let _ = parse_entry_file(&text);
    }

    #[test]
    fn arbitrary_register_lines_never_panic(text in "\\PC*") {
        if let Ok((name, spec)) = parse_register_line(&text) {
            // Whatever parses and validates formats back to a parseable line.
            if spec.validate(&name).is_ok() {
                prop_assert!(parse_register_line(&spec.register_line(&name)).is_ok());
            }
        }
    }

    #[test]
    fn hostile_names_and_paths_never_validate(
        good in name(),
        bad in prop_oneof![Just(":"), Just("/"), Just("\n"), Just("\0"), Just(" "), Just("\u{1b}")],
        at in 0usize..40,
    ) {
        let at = at.min(good.len());
        let name = format!("{}{bad}{}", &good[..at], &good[at..]);
        let spec = EntrySpec {
            matcher: Matcher::Extension("x".into()),
            interpreter: PathBuf::from("/bin/sh"),
            flags: Flags::default(),
        };
        prop_assert!(spec.validate(&name).is_err());
        if bad != "/" && bad != " " {
            let hostile = EntrySpec {
                interpreter: PathBuf::from(format!("/bin/{}", name)),
                ..spec
            };
            prop_assert!(hostile.validate("ok").is_err());
        }
    }

    #[test]
    fn arbitrary_toml_never_panics_and_errors_name_a_real_line(text in "(\\PC|\n){0,400}") {
        let path = Path::new("/etc/qus.d/fuzz.toml");
        if let Err(e) = qus::config::load_str(path, &text) {
            prop_assert_eq!(e.path.as_deref(), Some(path));
            if let Some(line) = e.line {
                prop_assert!(line >= 1 && line <= text.lines().count().max(1) + 1,
                    "line {} of {}", line, text.lines().count());
            }
        }
    }

    #[test]
    fn structured_toml_never_panics(
        section in prop_oneof![Just("[qemu]"), Just("[binfmt]"), Just("[daemon]"),
                               Just("[qemu.arch.arm]"), Just("[entry.x]"), Just("[nope]")],
        key in prop_oneof![Just("flags"), Just("targets"), Just("exclude"), Just("magic"),
                           Just("mask"), Just("offset"), Just("interpreter"), Just("path"),
                           Just("debounce_ms"), Just("type"), Just("enabled"), Just("bogus")],
        value in prop_oneof![Just("\"PF\"".to_string()), Just("[\"arm\"]".to_string()),
                             Just("true".to_string()), Just("-1".to_string()),
                             Just("99999999999".to_string()), "\"\\PC{0,20}\"".prop_map(|s| s),
                             Just("\"\\\\x4\"".to_string()), Just("\"/a:b\"".to_string())],
    ) {
        let text = format!("{section}\n{key} = {value}\n");
        let _ = qus::config::load_str(Path::new("/etc/qus.d/f.toml"), &text);
    }
}

/// Inputs that found bugs, kept as plain regression tests.
#[test]
fn regressions() {
    // Found by kernel_entry_files_parse_back: an extension that starts with
    // a dot ("." prints as "extension ..") lost all its leading dots.
    let e = parse_entry_file("enabled\ninterpreter /+\nflags: \nextension ..\n").unwrap();
    assert_eq!(e.spec.matcher, Matcher::Extension(".".into()));

    // A config file's line lookup used to be quadratic (found by the
    // 1000-entry benchmark); a long file must still name the right line.
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!(
            "[entry.e{i}]\ntype = \"extension\"\nextension = \"x{i}\"\ninterpreter = \"/bin/sh\"\n"
        ));
    }
    text.push_str("[qemu]\nflags = \"PQ\"\n");
    let e = qus::config::load_str(Path::new("/etc/qus.d/big.toml"), &text).unwrap_err();
    assert_eq!(e.line, Some(8002));
}
