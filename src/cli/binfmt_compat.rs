//! `binfmt`: tonistiigi/binfmt's command line, answered by qus, so that
//! `docker/setup-qemu-action` with `image:` set to qus's image, and
//! `docker run --privileged --rm IMAGE --install arm64` in a CI file, work
//! unchanged. qus runs it when started under the name `binfmt` (the image
//! has `/usr/bin/binfmt` → `qus`, and its `binfmt` tag uses it as the
//! entry point).
//!
//! The interface, as tonistiigi's `cmd/binfmt/main.go` has it: Go flags
//! (`-install LIST|all`, `-uninstall LIST` with globs, `-mount PATH`,
//! `-version`; one or two dashes, `=value` or the next argument); logs on
//! stderr (`installing: arm64 OK`); after any action, and with no
//! arguments, stdout is only `{"supported": […], "emulators": […]}`; exit
//! 0 even when an install fails, 2 on an unknown flag.
//!
//! What qus does differently, and says on stderr: it registers with flags
//! `PF`, not `CF` (`C` makes every setuid foreign program a user can reach
//! run as root while QEMU honours that user's `QEMU_*` variables; set
//! `QUS_FLAGS=PFC` to have it), and `-uninstall` removes only entries qus
//! registered (another tool's are left, and qus takes a same-named one over
//! on install, keeping a record to put it back).

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::model::{Native, Takeover};
use crate::observe::{self, Request};
use crate::plan::{EntryState, Mode, Overrides};
use crate::setup::CommonArgs;
use crate::{arch, engine, probe};

/// The Docker platforms tonistiigi's `supported` list can name, in the
/// order it checks them, with the arch each is.
const PLATFORMS: &[(&str, &str)] = &[
    ("x86_64", "linux/amd64"),
    ("aarch64", "linux/arm64"),
    ("riscv64", "linux/riscv64"),
    ("ppc64le", "linux/ppc64le"),
    ("s390x", "linux/s390x"),
    ("i386", "linux/386"),
    ("mips64el", "linux/mips64le"),
    ("mips64", "linux/mips64"),
    ("loongarch64", "linux/loong64"),
    ("arm", "linux/arm/v7"),
    ("arm", "linux/arm/v6"),
];

/// The arches tonistiigi's `-install all` means (its table), by qus name.
const ALL: &[&str] = &[
    "aarch64",
    "arm",
    "riscv64",
    "ppc64le",
    "s390x",
    "i386",
    "x86_64",
    "mips64el",
    "mips64",
    "loongarch64",
];

const USAGE: &str = "Usage of binfmt:
  -install string
    \tarchitectures to install
  -mount string
    \tbinfmt_misc mount point (default \"/proc/sys/fs/binfmt_misc\")
  -uninstall string
    \tarchitectures to uninstall
  -version
    \tdisplay version
";

/// The flags given.
#[derive(Debug, Default, PartialEq, Eq)]
struct Flags {
    install: Option<String>,
    uninstall: Option<String>,
    mount: Option<String>,
    version: bool,
}

/// Go's `flag` package: `-name`, `--name`, `-name=value`, `-name value`;
/// parsing stops at the first non-flag or `--`. `Err`: the message Go
/// prints (then exit 2); `Ok(None)`: `-h`/`-help`.
fn parse(args: &[String]) -> Result<Option<Flags>, String> {
    let mut flags = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" || !a.starts_with('-') || a == "-" {
            break;
        }
        let body = a.trim_start_matches('-');
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        match name {
            "h" | "help" => return Ok(None),
            "version" => {
                flags.version = match value.as_deref() {
                    None | Some("true") | Some("1") => true,
                    Some("false") | Some("0") => false,
                    Some(v) => {
                        return Err(format!(
                            "invalid boolean value \"{v}\" for -version: parse error"
                        ))
                    }
                }
            }
            "install" | "uninstall" | "mount" => {
                let value = match value {
                    Some(v) => v,
                    None => {
                        i += 1;
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| format!("flag needs an argument: -{name}"))?
                    }
                };
                let slot = match name {
                    "install" => &mut flags.install,
                    "uninstall" => &mut flags.uninstall,
                    _ => &mut flags.mount,
                };
                *slot = Some(value);
            }
            _ => return Err(format!("flag provided but not defined: -{name}")),
        }
        i += 1;
    }
    Ok(Some(flags))
}

/// Run as `binfmt`, with the arguments after the program name.
pub fn main(args: &[String]) -> ExitCode {
    let flags = match parse(args) {
        Ok(Some(f)) => f,
        Ok(None) => {
            eprint!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("{msg}");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init("error", false);
    // tonistiigi logs failures and exits 0; so does this.
    if let Err(e) = run(&flags) {
        eprintln!("error: {e:#}");
    }
    ExitCode::SUCCESS
}

/// qus's common options (its `QUS_*` variables apply), at `-mount`.
#[derive(Debug, Parser)]
pub(super) struct Common {
    #[command(flatten)]
    pub(super) common: CommonArgs,
}

fn run(flags: &Flags) -> Result<()> {
    let mount = flags
        .mount
        .clone()
        .unwrap_or_else(|| "/proc/sys/fs/binfmt_misc".into());
    let common = Common::try_parse_from(["binfmt", "--binfmt-misc", &mount])?.common;
    let mut system = common.system()?;
    // As tonistiigi's does first: binfmt_misc mounted if it is not (a
    // container's /proc has none), for every action, the status JSON too.
    let mounted = engine::mount(&system, true)?;
    if mounted && !flags.version {
        warn_if_instance_dies_with_us(&system);
    }
    // Said where something is installed or uninstalled; a plain status
    // call prints only the JSON, as tonistiigi's does.
    let scope = where_entries_go(&system);
    if let (Some(note), true) = (&scope, flags.install.is_some() || flags.uninstall.is_some()) {
        eprintln!("qus: {note}");
    }
    if flags.version {
        let world = observe::observe(&system, &Request::default())?;
        let qemu = emulator_version(&system, &world).unwrap_or_else(|| "none".into());
        eprintln!("binfmt/qus-{} qemu/{qemu}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    // What a user of this command means by installing: an entry that
    // works, whoever had the name before (recorded, so it comes back).
    system.config.takeover.value = Takeover::All;
    if let Some(list) = &flags.uninstall {
        uninstall(&system, list)?;
    }
    if let Some(list) = &flags.install {
        install(&system, list, scope.is_some())?;
    }
    let world = observe::observe(&system, &Request::default())?;
    println!("{}", status_json(&world, system.binfmt.root())?);
    Ok(())
}

/// Where registrations made here take effect, when that is not the host:
/// on Linux 6.7+ a container in a user namespace of its own (rootless
/// podman with `--privileged`, LXD/Incus, Sysbox) gets a binfmt_misc
/// instance of its own, which the host never uses (tonistiigi/binfmt#261,
/// podman#26966). `None` on the host's instance.
pub(super) fn where_entries_go(system: &crate::observe::System) -> Option<String> {
    match crate::userns::instance_at(system.binfmt.root()) {
        crate::userns::Instance::Host => None,
        crate::userns::Instance::Private => Some(
            "this binfmt_misc is this user namespace's own, not the host's (a rootless \
             engine, LXD/Incus or Sysbox container on Linux 6.7+): what is registered here \
             runs only programs started inside this namespace; the host's entries are \
             unchanged and the host cannot use these"
                .into(),
        ),
        crate::userns::Instance::Ancestor => Some(
            "this binfmt_misc belongs to a parent user namespace and cannot be changed from \
             here: nothing registered here reaches it"
                .into(),
        ),
    }
}

/// Under a rootless engine the binfmt_misc just mounted is the user
/// namespace's own instance, and the kernel drops it, entries and all,
/// when its last mount goes: when this container exits, unless something
/// else in the namespace keeps it mounted. Empty right after mounting
/// means nothing does; say so (and how), rather than let the next
/// container fail with "exec format error".
pub(super) fn warn_if_instance_dies_with_us(system: &crate::observe::System) {
    if crate::userns::here().initial {
        return;
    }
    let empty = std::fs::read_dir(system.binfmt.root()).is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .all(|e| matches!(e.file_name().to_str(), Some("register" | "status")))
    });
    if empty {
        eprintln!(
            "qus: this binfmt_misc is a user namespace's own (a rootless engine's), and the \
             kernel drops its entries when this container exits unless the namespace keeps \
             it mounted: first run `podman unshare mount -t binfmt_misc binfmt_misc \
             /proc/sys/fs/binfmt_misc` (or `qus podman register`, which keeps the \
             registrations right)"
        );
    }
}

fn emulator_version(
    system: &crate::observe::System,
    world: &crate::model::World,
) -> Option<String> {
    let versions = &system.versions;
    let found = world.wanted.items.iter().find_map(|w| {
        let d = w.want.as_ref().ok()?;
        versions.of(&d.spec.interpreter, &d.identity)
    });
    engine::keep_caches(system, world);
    found.map(|v| v.split_whitespace().next().unwrap_or("").to_string())
}

/// What `-install` says after a platform: OK, or why not.
fn install_verdict(pass: &engine::Outcome, name: &str, not_host: bool) -> String {
    let failed = pass
        .applied
        .failed
        .iter()
        .find(|(act, _)| act.entry() == name);
    let item = pass.plan.items.iter().find(|i| i.name == name);
    // Registered now, or by this pass.
    let live = |s: &EntryState| {
        matches!(
            s,
            EntryState::Registered | EntryState::Missing | EntryState::Stale | EntryState::Disabled
        )
    };
    match (failed, item) {
        (Some((_, why)), _) => why.clone(),
        (None, Some(i)) if live(&i.state) && not_host => {
            "OK (in this user namespace's own binfmt_misc, not the host's)".into()
        }
        (None, Some(i)) if live(&i.state) => "OK".into(),
        (None, Some(i)) if i.state == EntryState::Native => "OK (the host runs it natively)".into(),
        (None, Some(i)) => format!(
            "{}: {}",
            i.state.as_str(),
            i.detail.as_deref().unwrap_or("not registered")
        ),
        (None, None) => "not registered".into(),
    }
}

/// `-install`: `all` or a comma list of platforms or arch names.
fn install(system: &crate::observe::System, list: &str, not_host: bool) -> Result<()> {
    let wanted: Vec<(String, Option<&'static arch::Arch>)> = if list == "all" {
        ALL.iter().map(|a| (a.to_string(), arch::find(a))).collect()
    } else {
        list.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| (s.to_string(), arch::find(s)))
            .collect()
    };
    let arches: Vec<String> = wanted
        .iter()
        .filter_map(|(_, a)| a.map(|a| a.name.to_string()))
        .collect();
    let flags = std::env::var("QUS_FLAGS").unwrap_or_else(|_| "PF".into());
    let parsed = crate::binfmt::Flags::parse(&flags)
        .map_err(|e| anyhow::anyhow!("QUS_FLAGS={flags}: {e}"))?;
    if !parsed.credentials {
        eprintln!(
            "qus: registering with flags {flags}, not tonistiigi/binfmt's CF: with C every \
             setuid foreign program a user can reach runs as root and QEMU honours that \
             user's QEMU_* variables (see qus.d(5)); QUS_FLAGS=PFC if containers need setuid"
        );
    }
    let scope: BTreeSet<String> = arches.iter().map(|a| system.config.entry_name(a)).collect();
    let request = Request {
        overrides: Overrides {
            targets: Some(arches.clone()),
            flags: Some(parsed),
        },
        ..Request::default()
    };
    let mode = Mode::Reconcile {
        takeover: Takeover::All,
        scope: Some(scope),
        holds: BTreeSet::new(),
    };
    let pass = engine::run(system, &request, mode)?;
    for (given, a) in &wanted {
        let Some(a) = a else {
            eprintln!("installing: {given} unsupported architecture: {given}");
            continue;
        };
        let verdict = install_verdict(&pass, &system.config.entry_name(a.name), not_host);
        eprintln!("installing: {given} {verdict}");
    }
    Ok(())
}

/// `-uninstall`: platforms, arch names or globs over the entry names.
fn uninstall(system: &crate::observe::System, list: &str) -> Result<()> {
    let world = observe::observe(system, &Request::default())?;
    let mut names = BTreeSet::new();
    for v in list.split(',').filter(|s| !s.is_empty()) {
        let pattern = match arch::find(v) {
            Some(a) => system.config.entry_name(a.name),
            None => v.to_string(),
        };
        let matched: Vec<&String> = world.kernel.keys().filter(|n| glob(&pattern, n)).collect();
        if matched.is_empty() {
            eprintln!("uninstalling: {pattern} not found");
        }
        names.extend(matched.into_iter().cloned());
    }
    // qus's own: recorded, or exactly what qus registers under that name.
    // The second counts where records do not last: each `docker run --rm`
    // of the image starts with an empty /run/qusd, and the entries an
    // earlier container registered are still qus's.
    let identical =
        |n: &String| {
            world.kernel.get(n).is_some_and(|k| {
                world.wanted.items.iter().any(|w| {
                    &w.name == n && w.want.as_ref().is_ok_and(|d| d.spec.equivalent(&k.spec))
                })
            })
        };
    let (ours, theirs): (BTreeSet<String>, BTreeSet<String>) = names
        .into_iter()
        .partition(|n| world.owned.contains_key(n) || identical(n));
    for n in &theirs {
        eprintln!(
            "uninstalling: {n} left in place: another tool registered it, and qus removes \
             only its own entries (an install takes it over and keeps a record to put it back)"
        );
    }
    if ours.is_empty() {
        return Ok(());
    }
    let pass = engine::run(
        system,
        &Request::default(),
        Mode::Unregister {
            names: Some(ours.clone()),
        },
    )?;
    for n in &ours {
        // What qus had taken the name over from goes back: the platform
        // may still be supported, through that entry. Say so.
        let put_back = pass.applied.done.iter().find_map(|a| match a {
            crate::plan::Action::Restore { name, spec } if name == n => Some(spec),
            _ => None,
        });
        match (
            pass.applied.failed.iter().find(|(a, _)| a.entry() == n),
            put_back,
        ) {
            (Some((_, why)), _) => eprintln!("uninstalling: {n} {why}"),
            (None, Some(spec)) => eprintln!(
                "uninstalling: {n} OK: qus's entry removed, and the entry it had replaced is back \
                 ({}, flags {}), so its platform may still run",
                spec.interpreter.display(),
                spec.flags
            ),
            (None, None) => eprintln!("uninstalling: {n} OK"),
        }
    }
    Ok(())
}

/// The status JSON: `supported` (platforms the kernel runs now, native
/// first), `emulators` (enabled entries by name, or null).
fn status_json(world: &crate::model::World, root: &std::path::Path) -> Result<String> {
    // As tonistiigi's runs a test binary per platform: a platform is
    // supported when the arch's probe really runs, through whichever entry
    // catches it (one whose interpreter is gone fails here).
    let runs = |name: &str| -> bool {
        matches!(world.native.get(name), Some(Native::Yes(_)))
            || probe::find(name).is_some_and(|p| {
                world.catcher(p.program).is_some()
                    && probe::run(p, std::time::Duration::from_secs(10)) == probe::RunResult::Pass
            })
    };
    let own = arch::find(&arch::kernel_machine()).map(|a| a.name);
    let mut supported: Vec<&str> = PLATFORMS
        .iter()
        .filter(|(a, _)| Some(*a) == own)
        .map(|(_, p)| *p)
        .collect();
    supported.extend(
        PLATFORMS
            .iter()
            .filter(|(a, _)| Some(*a) != own && runs(a))
            .map(|(_, p)| *p),
    );
    let mut emulators: Vec<String> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "register" && n != "status")
        .filter(|n| std::fs::read_to_string(root.join(n)).is_ok_and(|t| t.starts_with("enabled")))
        .collect();
    emulators.sort();
    // Field order as tonistiigi's (a struct, not a map).
    #[derive(serde::Serialize)]
    struct Out<'a> {
        supported: Vec<&'a str>,
        emulators: Option<Vec<String>>,
    }
    let out = Out {
        supported,
        emulators: (!emulators.is_empty()).then_some(emulators),
    };
    Ok(serde_json::to_string_pretty(&out)?)
}

/// Whether an entry name matches a `-uninstall` glob, as Go's
/// `filepath.Match` (tonistiigi's) decides (see [`super::go_match`]). A
/// malformed pattern matches only itself.
fn glob(pattern: &str, name: &str) -> bool {
    super::go_match::matches(pattern, name).unwrap_or(pattern == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn go_flags_in_every_spelling() {
        let f = parse(&args(&["--install", "arm64,riscv64", "-uninstall=qemu-*"]))
            .unwrap()
            .unwrap();
        assert_eq!(f.install.as_deref(), Some("arm64,riscv64"));
        assert_eq!(f.uninstall.as_deref(), Some("qemu-*"));
        assert!(parse(&args(&["-version"])).unwrap().unwrap().version);
        assert_eq!(parse(&args(&["--help"])).unwrap(), None);
        assert_eq!(
            parse(&args(&["--reset"])).unwrap_err(),
            "flag provided but not defined: -reset"
        );
        assert_eq!(
            parse(&args(&["-install"])).unwrap_err(),
            "flag needs an argument: -install"
        );
        // Parsing stops at the first non-flag, as Go's does.
        let f = parse(&args(&["stray", "--install", "arm64"]))
            .unwrap()
            .unwrap();
        assert_eq!(f.install, None);
    }

    #[test]
    fn globs_match_entry_names() {
        assert!(glob("qemu-*", "qemu-aarch64"));
        assert!(glob("qemu-aarch6?", "qemu-aarch64"));
        assert!(!glob("qemu-*", "python3.11"));
        assert!(glob("*", "x"));
        assert!(!glob("qemu-arm", "qemu-armeb"));
        assert!(glob("qemu-[ab]*", "qemu-aarch64"));
        assert!(glob("qemu-[", "qemu-["));
        // Go's classes: ^ negates, ! does not.
        assert!(!glob("[^q]*", "qemu-aarch64"));
        assert!(glob("qemu-[!a]*", "qemu-aarch64"));
        assert!(!glob("qemu-[!a]*", "qemu-riscv64"));
        assert!(glob("[!q]*", "qemu-aarch64"));
    }
}
