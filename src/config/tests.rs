//! Config parsing, validation and merging, on fixture trees.

use super::*;
use crate::binfmt::entry::Matcher;
use std::fs;

fn p(name: &str) -> PathBuf {
    PathBuf::from(format!("/etc/qus.d/{name}"))
}

#[test]
fn defaults_apply_with_no_file() {
    let c = load(&[PathBuf::from("/nonexistent-qus-dir")]).expect("defaults");
    assert_eq!(
        c.binfmt_path.value,
        PathBuf::from("/proc/sys/fs/binfmt_misc")
    );
    assert!(c.binfmt_mount.value);
    assert_eq!(c.flags.value.to_string(), "PF");
    assert_eq!(c.name_prefix.value, "qemu-");
    assert_eq!(c.targets.value, ["all"]);
    assert_eq!(c.takeover.value, Takeover::Distro);
    assert_eq!(c.others.value, Others::Yield);
    assert_eq!(c.debounce_ms.value, 100);
    assert!(!c.unregister_on_stop.value);
    assert!(c.files.is_empty());
    assert_eq!(c.flags.source, Source::Default);
}

#[test]
fn values_remember_file_and_line() {
    let c = load_str(
        &p("a.toml"),
        "# comment\n[qemu]\n\nexclude = [\"arm\"]\nflags = \"F\"\n",
    )
    .expect("ok");
    assert_eq!(c.exclude.value, ["arm"]);
    assert_eq!(
        c.exclude.source,
        Source::File {
            path: p("a.toml"),
            line: 4
        }
    );
    assert_eq!(c.flags.source.to_string(), "/etc/qus.d/a.toml:5");
}

#[test]
fn full_example_parses() {
    let text = r#"
[binfmt]
path = "/proc/sys/fs/binfmt_misc"
mount = false

[qemu]
search_path  = ["/usr/bin", "/usr/local/bin"]
binary_names = ["qemu-{arch}-static", "qemu-{arch}"]
targets = ["aarch64", "riscv64"]
exclude = ["riscv64"]
flags = "POCF"
name_prefix = "qus-"
takeover = false

[qemu.arch.aarch64]
interpreter = "/opt/qemu/bin/qemu-aarch64"
flags = "FP"
enabled = true

[entry.wine]
type = "magic"
offset = 0
magic = "MZ"
mask = ""
interpreter = "/usr/bin/wine"
flags = ""

[entry.jar]
type = "extension"
extension = ".jar"
interpreter = "/usr/bin/jexec"

[daemon]
debounce_ms = 250
unregister_on_stop = true
"#;
    let c = load_str(&p("x.toml"), text).expect("example");
    assert!(!c.binfmt_mount.value);
    assert_eq!(c.targets.value, ["aarch64", "riscv64"]);
    assert!(!c.targets_arch("riscv64"), "exclude wins");
    assert!(c.targets_arch("aarch64"));
    assert_eq!(c.entry_name("arm"), "qus-arm");
    assert_eq!(c.flags.value.to_string(), "POCF");
    let a = &c.arch["aarch64"];
    assert_eq!(
        a.interpreter.as_ref().map(|i| i.value.clone()),
        Some(PathBuf::from("/opt/qemu/bin/qemu-aarch64"))
    );
    assert_eq!(
        a.flags.as_ref().map(|f| f.value.to_string()),
        Some("PF".to_string())
    );
    let wine = &c.entries["wine"];
    assert_eq!(
        wine.spec.matcher,
        Matcher::Magic {
            offset: 0,
            magic: b"MZ".to_vec(),
            mask: None
        }
    );
    assert_eq!(
        c.entries["jar"].spec.matcher,
        Matcher::Extension("jar".into())
    );
    assert_eq!(c.debounce_ms.value, 250);
    assert!(c.unregister_on_stop.value);
}

fn err(text: &str) -> ConfigError {
    load_str(&p("bad.toml"), text).expect_err("should fail")
}

#[test]
fn errors_name_file_line_and_reason() {
    let cases: &[(&str, usize, &str)] = &[
        ("[qemu]\nflagz = \"P\"\n", 2, "unknown key `flagz`: did you mean `flags`?"),
        ("[nope]\n", 1, "unknown key `nope` (known here: `binfmt`, `qemu`"),
        ("[qemu]\ntakeover = \"yes\"\n", 2, "must be true, false or \"distro\""),
        ("[qemu]\ntakeover = 3\n", 2, "expected true, false or \"distro\""),
        ("[qemu]\nothers = \"fight\"\n", 2, "must be \"yield\", \"yield-always\" or \"override\""),
        ("[qemu]\ndebounce_ms = \"x\"\n", 2, "unknown key `debounce_ms`"),
        ("[qemu]\n\ntargets = [\"aarch64\", \"z80\"]\n", 3, "unknown arch \"z80\""),
        ("[qemu]\nflags = \"PQ\"\n", 2, "unknown flag 'Q'"),
        ("[qemu]\nsearch_path = [\"relative\"]\n", 2, "not an absolute path"),
        ("[qemu]\nbinary_names = [\"qemu-static\"]\n", 2, "{arch}"),
        ("[qemu]\nname_prefix = \"a/b\"\n", 2, "contains '/'"),
        ("[qemu.arch.z80]\nflags = \"F\"\n", 1, "unknown arch"),
        ("[qemu.arch.arm]\ninterpreter = \"rel\"\n", 2, "absolute"),
        ("[entry.\"bad name\"]\ninterpreter = \"/bin/sh\"\nmagic = \"x\"\n", 1, "contains ' '"),
        ("[entry.w]\nmagic = \"MZ\"\n", 1, "interpreter is required"),
        ("[entry.w]\ninterpreter = \"/bin/sh\"\n", 1, "magic is required"),
        ("[entry.w]\ninterpreter = \"/bin/sh\"\nmagic = \"\\\\x4\"\n", 3, "two hex digits"),
        ("[entry.w]\ninterpreter = \"/bin/sh\"\nmagic = \"MZ\"\nmask = \"\\\\xff\"\n", 4, "same length"),
        ("[entry.w]\ninterpreter = \"/bin/a:b\"\nmagic = \"MZ\"\n", 2, "contains ':'"),
        ("[entry.w]\ninterpreter = \"/bin/sh\"\nmagic = \"MZ\"\noffset = 127\n", 3, "past byte 128"),
        ("[entry.w]\ntype = \"elf\"\ninterpreter = \"/bin/sh\"\n", 2, "must be \"magic\" or \"extension\""),
        ("[entry.w]\ntype = \"extension\"\nextension = \"a/b\"\ninterpreter = \"/bin/sh\"\n", 3, "contains '/'"),
        ("[entry.w]\ntype = \"extension\"\nmagic = \"MZ\"\nextension = \"x\"\ninterpreter = \"/bin/sh\"\n", 3, "only for type = \"magic\""),
        ("[entry.qemu-arm]\ninterpreter = \"/bin/sh\"\nmagic = \"MZ\"\n", 1, "belongs to a qemu arch"),
        ("[daemon]\ndebounce_ms = 99999999\n", 2, "at most 60000"),
    ];
    for (text, line, reason) in cases {
        let e = err(text);
        assert_eq!(e.path.as_deref(), Some(p("bad.toml").as_path()), "{text:?}");
        assert_eq!(e.line, Some(*line), "{text:?}: {e}");
        assert!(
            e.to_string().contains(reason),
            "{text:?}: {e} lacks {reason:?}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!("/etc/qus.d/bad.toml:{line}: ")),
            "{e}"
        );
    }
}

fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    for d in ["usr", "run", "etc"] {
        fs::create_dir(t.path().join(d)).expect("mkdir");
    }
    t
}

fn dirs(t: &tempfile::TempDir) -> Vec<PathBuf> {
    ["usr", "run", "etc"]
        .iter()
        .map(|d| t.path().join(d))
        .collect()
}

// Masking across directories, /dev/null masks and the lexical order of
// files across directories are cases in tests/config-cases/.

#[test]
fn kubernetes_configmap_symlinks_are_followed() {
    let t = tree();
    let etc = t.path().join("etc");
    let data = etc.join("..2026_11_26_21_00_00.000");
    fs::create_dir(&data).expect("mkdir");
    fs::write(data.join("qus.toml"), "[qemu]\nexclude = [\"s390x\"]\n").expect("write");
    std::os::unix::fs::symlink("..2026_11_26_21_00_00.000", etc.join("..data")).expect("link");
    std::os::unix::fs::symlink("..data/qus.toml", etc.join("qus.toml")).expect("link");
    let c = load(&dirs(&t)).expect("load");
    assert_eq!(c.exclude.value, ["s390x"]);
}

#[test]
fn entries_merge_field_by_field_across_files() {
    let t = tree();
    fs::write(
        t.path().join("usr/10-wine.toml"),
        "[entry.wine]\nmagic = \"MZ\"\ninterpreter = \"/usr/bin/wine\"\n",
    )
    .expect("w");
    fs::write(
        t.path().join("etc/20-wine.toml"),
        "[entry.wine]\nflags = \"P\"\n",
    )
    .expect("w");
    let c = load(&dirs(&t)).expect("load");
    assert_eq!(c.entries["wine"].spec.flags.to_string(), "P");
    assert_eq!(
        c.entries["wine"].spec.interpreter,
        PathBuf::from("/usr/bin/wine")
    );
    fs::write(
        t.path().join("etc/30-off.toml"),
        "[entry.wine]\nenabled = false\n",
    )
    .expect("w");
    assert!(!load(&dirs(&t)).expect("load").entries["wine"].enabled);
}

#[test]
fn world_writable_config_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let t = tree();
    let f = t.path().join("etc/50-x.toml");
    fs::write(&f, "[qemu]\nflags = \"P\"\n").expect("w");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o666)).expect("chmod");
    let e = load(&dirs(&t)).expect_err("refused");
    assert!(e.to_string().contains("writable by group or others"), "{e}");
    assert_eq!(e.path.as_deref(), Some(f.as_path()));
}

#[test]
fn shipped_example_is_valid_and_changes_nothing() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/qus.d/50-example.toml");
    let text = fs::read_to_string(&path).expect("example");
    let c = load_str(&path, &text).expect("example parses");
    let defaults = Config {
        files: vec![path.clone()],
        ..Config::default()
    };
    assert_eq!(c, defaults);
    // Uncommented, every setting in it is valid too.
    let uncommented: String = text
        .lines()
        .filter(|l| l.starts_with('#') && !l.starts_with("# ") && l.len() > 1)
        .map(|l| format!("{}\n", &l[1..]))
        .collect();
    let c = load_str(&path, &uncommented).expect("uncommented example parses");
    assert!(c.entries.contains_key("wine"));
    assert!(c.arch.contains_key("aarch64"));
}
