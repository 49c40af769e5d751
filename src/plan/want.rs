//! What qus wants for each entry, decided from facts alone: the
//! configuration, the command line's overrides, the native verdicts and
//! what observe found on disk (a [`Candidate`] per entry). Nothing here
//! reads a file, so every precedence rule (`enabled` over `exclude` over
//! `targets`, `--flags` over per-arch over global flags, dynamic emulators
//! under `F`, entries that would break the host) is tested as data.

use crate::arch::Arch;
use crate::binfmt::{EntrySpec, Flags, Matcher};
use crate::config::{Config, CustomEntry};
use crate::model::{
    Candidate, Desired, HostView, InterpreterCheck, Native, NativeVerdicts, Others, Skip, Want,
};

#[cfg(test)]
mod tests;

/// Run-time adjustments from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `qemu.targets` for this run (`qus register ARCH…`).
    pub targets: Option<Vec<String>>,
    /// Replaces the flags of every qemu entry (`--flags`).
    pub flags: Option<Flags>,
}

/// Why an arch is not wanted, before anyone looks for its emulator (so
/// observe looks only for the emulators of arches that may be wanted).
pub fn arch_skip(
    config: &Config,
    native: &NativeVerdicts,
    overrides: &Overrides,
    arch: &Arch,
) -> Option<Skip> {
    let forced = config.arch.get(arch.name).and_then(|o| o.enabled.as_ref());
    let targeted = match &overrides.targets {
        Some(list) => list.iter().any(|t| t == arch.name || t == "all"),
        None => config.targets_arch(arch.name),
    };
    let excluded = config.exclude.value.iter().any(|e| e == arch.name);
    match forced {
        Some(e) if !e.value => Some(Skip::Excluded(format!("enabled = false ({})", e.source))),
        Some(_) => None,
        None if excluded => Some(Skip::Excluded(format!(
            "in qemu.exclude ({})",
            config.exclude.source
        ))),
        // Native says more than "not targeted": the host runs it itself.
        None => match native.get(arch.name) {
            Some(Native::Yes(why)) => Some(Skip::Native(why.clone())),
            _ if !targeted => Some(Skip::Excluded("not in qemu.targets".into())),
            _ => None,
        },
    }
}

/// Does the configuration alone leave this arch out (not targeted, or
/// excluded), so that qusd removes an entry for it however it got there?
/// (What `qus register ARCH` warns about and `qus enable ARCH` undoes.)
pub fn left_out(config: &Config, arch: &str) -> bool {
    let Some(a) = crate::arch::find(arch) else {
        return false;
    };
    matches!(
        arch_skip(config, &NativeVerdicts::new(), &Overrides::default(), a),
        Some(Skip::Excluded(_))
    )
}

/// The want for one table arch. `candidate`: the emulator observe found
/// for it (`None`: none found, or not looked for because it is skipped).
pub fn arch_want(
    config: &Config,
    native: &NativeVerdicts,
    overrides: &Overrides,
    arch: &Arch,
    candidate: Option<&Candidate>,
    host: HostView<'_>,
) -> Want {
    let over = config.arch.get(arch.name);
    let want = match (arch_skip(config, native, overrides, arch), candidate) {
        (Some(skip), _) => Err(skip),
        (None, None) => Err(Skip::NoInterpreter(not_found(config, arch))),
        (None, Some(found)) => {
            let flags = arch_flags(config, overrides, arch, host.kernel_has_p_bit);
            let allow_dynamic = over
                .and_then(|o| o.allow_dynamic.as_ref())
                .map_or(config.allow_dynamic.value, |d| d.value);
            let catch_host = over
                .and_then(|o| o.catch_host_programs.as_ref())
                .is_some_and(|c| c.value);
            match not_a_host_program(found, native, host.host_heads)
                .or_else(|| dynamic_under_f(found, flags, allow_dynamic))
            {
                Some(why) => Err(Skip::Refused(why)),
                None => checked(
                    EntrySpec {
                        matcher: Matcher::Magic {
                            offset: 0,
                            magic: arch.magic.to_vec(),
                            mask: Some(arch.mask.to_vec()),
                        },
                        interpreter: found.path.clone(),
                        flags,
                    },
                    found,
                    catch_host,
                    host,
                ),
            }
        }
    };
    Want {
        name: config.entry_name(arch.name),
        arch: Some(arch.name.to_string()),
        want,
        others: over
            .and_then(|o| o.others.as_ref())
            .map_or(config.others.value, |o| o.value),
    }
}

/// The want for a custom `[entry.NAME]`. `candidate`: what observe found
/// at its interpreter path (`None` when the entry is disabled).
pub fn custom_want(
    name: &str,
    entry: &CustomEntry,
    candidate: Option<&Candidate>,
    host: HostView<'_>,
) -> Want {
    let want = match candidate {
        _ if !entry.enabled => Err(Skip::Excluded(format!("disabled in {}", entry.source))),
        Some(found) => checked(entry.spec.clone(), found, entry.catch_host_programs, host),
        None => Err(Skip::NoInterpreter(format!(
            "{} does not exist",
            entry.spec.interpreter.display()
        ))),
    };
    Want {
        name: name.to_string(),
        arch: None,
        want,
        // A custom entry is named on purpose: never yields.
        others: Others::Override,
    }
}

/// The flags an arch's entry gets: `--flags`, else the arch's own, else
/// the global ones; without `P` on a kernel that cannot pass it on.
pub fn arch_flags(config: &Config, overrides: &Overrides, arch: &Arch, p_bit: bool) -> Flags {
    let flags = overrides
        .flags
        .or_else(|| {
            config
                .arch
                .get(arch.name)
                .and_then(|o| o.flags.as_ref())
                .map(|f| f.value)
        })
        .unwrap_or(config.flags.value);
    flags_for_kernel(flags, p_bit).0
}

/// The flags an entry gets on this kernel. Before Linux 5.12 QEMU cannot
/// tell that `P` is set (no `AT_FLAGS` bit) and takes the kept argv[0] for
/// the program's first argument, so every program would see its arguments
/// shifted: qus drops `P` there (and says so once).
pub fn flags_for_kernel(mut flags: Flags, kernel_has_p_bit: bool) -> (Flags, bool) {
    let dropped = flags.preserve_argv0 && !kernel_has_p_bit;
    if dropped {
        flags.preserve_argv0 = false;
    }
    (flags, dropped)
}

/// An emulator must be a program this host runs itself: an ELF executable
/// (`ET_EXEC` or `ET_DYN`) for this machine (the class, byte order and
/// `e_machine` of qus's own executable) or for an arch the kernel loads
/// natively (an i386 build on x86_64), or a `#!` script (a wrapper that
/// sets `QEMU_CPU`, say). Anything else named like an emulator (an empty
/// file, a text file, another arch's program) would be registered only
/// for every foreign program to fail; it is refused, with the reason.
/// `None` when the head could not be read: the safety rules say why.
fn not_a_host_program(
    found: &Candidate,
    native: &NativeVerdicts,
    host_heads: &[Vec<u8>],
) -> Option<String> {
    let path = found.path.display();
    let head = found.head.as_deref()?;
    if head.is_empty() {
        return Some(format!("{path} is empty: not an emulator"));
    }
    if head.starts_with(b"#!") {
        return None;
    }
    if head.len() < 20 || !head.starts_with(b"\x7fELF") {
        return Some(format!(
            "{path} is not a program (neither ELF nor a #! script): not an emulator"
        ));
    }
    let e_type = match head[5] {
        2 => u16::from_be_bytes([head[16], head[17]]),
        _ => u16::from_le_bytes([head[16], head[17]]),
    };
    if !matches!(e_type, 2 | 3) {
        return Some(format!(
            "{path} is an ELF file but not an executable (e_type {e_type}): not an emulator"
        ));
    }
    let key = |h: &[u8]| h.get(..20).map(|h| (h[4], h[5], h[18], h[19]));
    if host_heads
        .iter()
        .any(|h| key(h).is_some() && key(h) == key(head))
    {
        return None;
    }
    let theirs = crate::arch::ARCHES.iter().find(|a| a.matches(head));
    if theirs.is_some_and(|a| matches!(native.get(a.name), Some(Native::Yes(_)))) {
        return None;
    }
    if host_heads.is_empty() {
        // This executable's own header could not be read: no judgement.
        return None;
    }
    Some(format!(
        "{path} is a program for {}, not for this host: it cannot run here as an emulator",
        theirs.map_or("another machine", |a| a.name)
    ))
}

/// Refuse a dynamically linked emulator under `F` unless allowed.
fn dynamic_under_f(found: &Candidate, flags: Flags, allowed: bool) -> Option<String> {
    if !flags.fix_binary || allowed {
        return None;
    }
    let loader = found.loader.as_deref()?;
    Some(format!(
        "{} is dynamically linked (needs {loader}): under F it works on the host but fails \
         in every container and chroot (\"No such file or directory\"); install \
         qemu-user-static, or set allow_dynamic = true",
        found.path.display()
    ))
}

/// The safety rules' verdict, then the host's: a wanted registration, or
/// why not. `catch_host_programs` (config, per arch or entry) lets through
/// an entry that would catch the host's own programs, never one that would
/// catch its own interpreter.
fn checked(
    spec: EntrySpec,
    found: &Candidate,
    catch_host_programs: bool,
    host: HostView<'_>,
) -> Result<Desired, Skip> {
    match &found.check {
        InterpreterCheck::Missing => Err(Skip::NoInterpreter(format!(
            "{} does not exist",
            found.path.display()
        ))),
        InterpreterCheck::Refused(why) => Err(Skip::Refused(why.clone())),
        InterpreterCheck::Safe { resolved, identity } => {
            let own_interpreter = found.head.as_deref();
            if let Some(why) = breaks_host(
                &spec.matcher,
                resolved,
                own_interpreter,
                host.host_heads,
                catch_host_programs,
            ) {
                return Err(Skip::Refused(why));
            }
            Ok(Desired {
                spec,
                identity: *identity,
            })
        }
    }
}

/// Would this entry break the host? One that catches its own interpreter
/// makes every run recurse until the kernel gives up ("Too many levels of
/// symbolic links"); one that catches the host's own programs (non-PIE
/// or PIE, of any native arch) sends every native program, `qus
/// unregister` included, to the emulator.
fn breaks_host(
    matcher: &Matcher,
    interpreter: &std::path::Path,
    interpreter_head: Option<&[u8]>,
    host_heads: &[Vec<u8>],
    catch_host_programs: bool,
) -> Option<String> {
    if interpreter_head.is_some_and(|h| matcher.catches(h)) {
        return Some(format!(
            "it would catch its own interpreter {} (every run would loop)",
            interpreter.display()
        ));
    }
    if !catch_host_programs && host_heads.iter().any(|h| matcher.catches(h)) {
        return Some(
            "it would catch the host's own programs (qus itself is one): \
             nothing native would run any more (set catch_host_programs = true \
             for this entry if that is really meant)"
                .into(),
        );
    }
    // The host runs scripts itself too: by their `#!` line, whatever
    // their name. An entry for `#!` at offset 0, or for the `.sh` that
    // every shell script is named with, would take them all.
    let script = matcher.catches(b"#!/bin/sh\n")
        || matches!(matcher, Matcher::Extension(e) if HOST_SCRIPT_EXTENSIONS.contains(&e.as_str()));
    if !catch_host_programs && script {
        return Some(
            "it would catch the host's own scripts (#! or .sh): every script would go to \
             its interpreter instead (set catch_host_programs = true for this entry if \
             that is really meant)"
                .into(),
        );
    }
    None
}

/// Extensions the host's own scripts carry, which the kernel runs by
/// their `#!` line.
const HOST_SCRIPT_EXTENSIONS: &[&str] = &["sh", "bash"];

/// "no qemu-x-static or qemu-x in /usr/bin:/usr/local/bin"
fn not_found(config: &Config, arch: &Arch) -> String {
    format!(
        "no {} in {}",
        config
            .binary_names
            .value
            .iter()
            .map(|t| t.replace("{arch}", arch.emulator))
            .collect::<Vec<_>>()
            .join(" or "),
        config
            .search_path
            .value
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    )
}
