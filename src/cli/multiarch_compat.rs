//! multiarch/qemu-user-static's command line, answered by qus: so that
//! `docker run --rm --privileged IMAGE --reset -p yes` in a CI file works
//! with qus's image in place of multiarch's. qus takes this interface when
//! its first argument is one of multiarch's (`--reset`) or of the
//! `qemu-binfmt-conf.sh` options multiarch passes on (`-p`, `-c`, `-g`,
//! `--qemu-path`, `--qemu-suffix`); qus's own command line has none of
//! them, so neither reading is ambiguous.
//!
//! The interface, as multiarch's `register.sh` has it: `--reset` (first
//! argument only) writes `-1` to every `qemu-*` entry, then
//! `qemu-binfmt-conf.sh --qemu-suffix -static --qemu-path /usr/bin "$@"`
//! registers every arch but the host's; `-p yes` gives `F`, `-c yes` gives
//! `OC`, `-g yes` gives `P`; one "Setting … as binfmt interpreter for …"
//! line per arch on stdout.
//!
//! What qus does differently, and says on stderr: `--reset` replaces the
//! `qemu-*` entries of the arches it registers (keeping a record to put
//! them back) but leaves the other tools' entries for arches it has no
//! emulator for, which multiarch's would delete; with no `-p`, entries are
//! `F` (persistent) all the same, as without it a container's emulators
//! are gone when it exits; `P` unless `-g no`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Parser;

use crate::model::Takeover;
use crate::observe::{self, Request};
use crate::plan::{EntryState, Mode, Overrides};

/// Whether these arguments are multiarch's (its first argument decides,
/// as `register.sh` looks only at `$1`).
pub fn wants(args: &[String]) -> bool {
    matches!(
        args.first().map(|a| a.split('=').next().unwrap_or(a)),
        Some(
            "--reset"
                | "-p"
                | "--persistent"
                | "-c"
                | "--credential"
                | "-g"
                | "--preserve-argv0"
                | "-Q"
                | "--qemu-path"
                | "-F"
                | "--qemu-suffix"
        )
    )
}

const USAGE: &str = "Usage (multiarch/qemu-user-static's, answered by qus):
  IMAGE [--reset] [-p|--persistent yes|no] [-c|--credential yes|no]
        [-g|--preserve-argv0 yes|no]
  --reset   replace the qemu-* entries of the arches this image registers
  -p yes    F: the kernel keeps the emulator open (qus's default anyway)
  -c yes    C (and O): setuid foreign programs run with their owner's ids
  -g yes    P: keep argv[0] (qus's default anyway)
";

/// What the arguments ask for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Asked {
    reset: bool,
    persistent: Option<bool>,
    credential: Option<bool>,
    preserve_argv0: Option<bool>,
    /// Options qus has its own way for, kept to say so.
    ignored: Vec<String>,
}

/// `qemu-binfmt-conf.sh`'s options after multiarch's `--reset`. `Ok(None)`:
/// `--help`.
fn parse(args: &[String]) -> Result<Option<Asked>, String> {
    let mut asked = Asked::default();
    let mut rest = args;
    if rest.first().map(String::as_str) == Some("--reset") {
        asked.reset = true;
        rest = &rest[1..];
    }
    let mut i = 0;
    while i < rest.len() {
        let (name, inline) = match rest[i].split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (rest[i].clone(), None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            rest.get(i)
                .cloned()
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        let yes_no = |v: String| -> Result<bool, String> {
            match v.as_str() {
                "yes" => Ok(true),
                "no" => Ok(false),
                _ => Err(format!("{name}: \"{v}\" is not yes or no")),
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "-p" | "--persistent" => asked.persistent = Some(yes_no(value()?)?),
            "-c" | "--credential" => asked.credential = Some(yes_no(value()?)?),
            "-g" | "--preserve-argv0" => asked.preserve_argv0 = Some(yes_no(value()?)?),
            "-Q" | "--qemu-path" | "-F" | "--qemu-suffix" => {
                let v = value()?;
                asked.ignored.push(format!("{name} {v}"));
            }
            "--reset" => {
                return Err("--reset must come first, as multiarch's register.sh reads it".into())
            }
            other => {
                return Err(format!(
                    "{other}: not an option of multiarch/qemu-user-static's image (qus answers \
                     --reset, -p, -c and -g; for the rest see qus --help)"
                ))
            }
        }
        i += 1;
    }
    Ok(Some(asked))
}

impl Asked {
    /// The flags to register with, and what differs from what
    /// `qemu-binfmt-conf.sh` would have written.
    fn flags(&self) -> (crate::binfmt::Flags, Vec<String>) {
        let mut notes = Vec::new();
        let fix_binary = self.persistent.unwrap_or(true);
        if self.persistent.is_none() {
            notes.push(
                "F (persistent) although -p yes was not given: without it the entries would \
                 name /usr/bin/qemu-* of whatever mount namespace runs a program, and this \
                 container's emulators are gone when it exits"
                    .to_string(),
            );
        }
        let preserve_argv0 = self.preserve_argv0.unwrap_or(true);
        let credentials = self.credential.unwrap_or(false);
        if credentials {
            notes.push(
                "C, as -c yes asks: every setuid foreign program a user can reach then runs \
                 as its owner (root) while QEMU honours that user's QEMU_* variables \
                 (see qus.d(5))"
                    .to_string(),
            );
        }
        let flags = crate::binfmt::Flags {
            preserve_argv0,
            open_binary: credentials,
            credentials,
            fix_binary,
        };
        (flags, notes)
    }
}

/// Run multiarch's interface with these arguments.
pub fn main(args: &[String]) -> ExitCode {
    let asked = match parse(args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("qus: {msg}");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init("error", false);
    match run(&asked) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("qus: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Register every arch this image (or host) has an emulator for; true
/// when nothing failed.
fn run(asked: &Asked) -> Result<bool> {
    // qus's common options: from its QUS_* variables only, as in the image.
    let common = super::binfmt_compat::Common::try_parse_from(["qus"])?.common;
    let system = common.system()?;
    if crate::engine::mount(&system, system.config.binfmt_mount.value)? {
        super::binfmt_compat::warn_if_instance_dies_with_us(&system);
    }
    let scope = super::binfmt_compat::where_entries_go(&system);
    if let Some(note) = &scope {
        eprintln!("qus: {note}");
    }
    for o in &asked.ignored {
        eprintln!("qus: {o} ignored: qus finds the emulators on its search path (qus.d(5): [qemu] search_path)");
    }
    let (flags, notes) = asked.flags();
    for n in &notes {
        eprintln!("qus: registering with {n}");
    }
    let takeover = if asked.reset {
        Takeover::All
    } else {
        system.config.takeover.value
    };
    let request = Request {
        overrides: Overrides {
            targets: None,
            flags: Some(flags),
        },
        ..Request::default()
    };
    let pass = crate::engine::run(&system, &request, Mode::reconcile(takeover))?;
    let (ok, registered) = report(&pass, scope.is_some());
    if asked.reset {
        say_what_reset_kept(&system, &registered)?;
    }
    if registered.is_empty() {
        let dirs: Vec<String> = (system.config.search_path.value.iter())
            .map(|p| p.display().to_string())
            .collect();
        bail!(
            "no emulator registered: none found on the search path ({})",
            dirs.join(", ")
        );
    }
    Ok(ok)
}

/// `qemu-binfmt-conf.sh`'s "Setting … as binfmt interpreter for …" line
/// per arch registered (stdout), the failures on stderr; whether none
/// failed, and the entries registered.
fn report(pass: &crate::engine::Outcome, not_host: bool) -> (bool, BTreeSet<String>) {
    let where_ = if not_host {
        " (in this user namespace's own binfmt_misc, not the host's)"
    } else {
        ""
    };
    let mut ok = true;
    let mut registered = BTreeSet::new();
    for item in &pass.plan.items {
        let (Some(arch), Some(spec)) = (&item.arch, &item.wanted) else {
            continue;
        };
        let failed = (pass.applied.failed.iter()).find(|(a, _)| a.entry() == item.name);
        if let Some((_, why)) = failed {
            eprintln!("qus: {}: {why}", item.name);
            ok = false;
            continue;
        }
        match item.state {
            EntryState::Registered
            | EntryState::Missing
            | EntryState::Stale
            | EntryState::Disabled => {
                println!(
                    "Setting {} as binfmt interpreter for {arch}{where_}",
                    spec.interpreter.display()
                );
                registered.insert(item.name.clone());
            }
            EntryState::Conflict => {
                eprintln!(
                    "qus: {}: {} (--reset replaces it)",
                    item.name,
                    item.detail.as_deref().unwrap_or("another tool's entry")
                );
                ok = false;
            }
            _ => {}
        }
    }
    (ok, registered)
}

/// What multiarch's `--reset` would also have removed, and qus kept.
fn say_what_reset_kept(
    system: &crate::observe::System,
    registered: &BTreeSet<String>,
) -> Result<()> {
    let after = observe::observe(system, &Request::default())?;
    for name in after.kernel.keys() {
        if name.starts_with("qemu-")
            && !registered.contains(name)
            && !after.owned.contains_key(name)
        {
            eprintln!(
                "qus: left {name} in place: another tool's, for an arch this image has no \
                 emulator for (multiarch's --reset would have removed it)"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn multiarch_lines_are_recognised_by_their_first_argument() {
        assert!(wants(&args(&["--reset", "-p", "yes"])));
        assert!(wants(&args(&["-p", "yes"])));
        assert!(wants(&args(&["--credential=yes"])));
        assert!(!wants(&args(&["register", "--reset"])));
        assert!(!wants(&args(&[])));
    }

    #[test]
    fn options_parse_as_qemu_binfmt_conf_reads_them() {
        let a = parse(&args(&["--reset", "-p", "yes", "--credential=yes"]))
            .unwrap()
            .unwrap();
        assert!(a.reset);
        assert_eq!((a.persistent, a.credential), (Some(true), Some(true)));
        let (f, notes) = a.flags();
        assert!(f.fix_binary && f.credentials && f.open_binary && f.preserve_argv0);
        assert!(notes.iter().any(|n| n.starts_with("C, as -c yes asks")));
        let plain = parse(&args(&["--reset"])).unwrap().unwrap();
        let (f, notes) = plain.flags();
        assert!(f.fix_binary && !f.credentials);
        assert!(notes.iter().any(|n| n.contains("-p yes was not given")));
        assert_eq!(
            parse(&args(&["-p", "maybe"])).unwrap_err(),
            "-p: \"maybe\" is not yes or no"
        );
        assert!(parse(&args(&["-p", "yes", "--reset"]))
            .unwrap_err()
            .contains("must come first"));
        assert!(parse(&args(&["--debian"]))
            .unwrap_err()
            .starts_with("--debian: not an option"));
        assert_eq!(parse(&args(&["--help"])).unwrap(), None);
        let q = parse(&args(&["--qemu-path", "/opt/q"])).unwrap().unwrap();
        assert_eq!(q.ignored, vec!["--qemu-path /opt/q".to_string()]);
    }
}
