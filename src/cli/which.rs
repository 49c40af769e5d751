//! `qus which FILE`: which binfmt_misc entry the kernel will use for a
//! file (as `update-binfmts --find` tells), the others that would also
//! catch it, and whether qus owns them. Exit 1 when no entry catches it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;

use super::CommonArgs;
use crate::binfmt::Matcher;
use crate::escape::clean;
use crate::observe::{self, Request};

#[derive(Debug, Args)]
pub struct WhichArgs {
    /// The program to look up.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

pub fn run(common: &CommonArgs, args: &WhichArgs) -> Result<ExitCode> {
    let mut header = vec![0u8; 256];
    // Non-blocking, regular files only: a FIFO would hang the command.
    let n = crate::fsutil::open_regular(&args.file)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut header))
        .with_context(|| format!("reading {}", args.file.display()))?;
    header.truncate(n);
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (system, config_broken) = common.system_for_reading()?;
    let world = observe::observe(&system, &Request::default())?;
    crate::engine::keep_caches(&system, &world);
    let catching: Vec<&String> = if world.binfmt_live() {
        world
            .match_order
            .iter()
            .filter(|n| {
                world.kernel.get(*n).is_some_and(|e| {
                    e.enabled
                        && match &e.spec.matcher {
                            Matcher::Extension(ext) => name.ends_with(&format!(".{ext}")),
                            m => m.catches(&header),
                        }
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let file = clean(&args.file.display().to_string());
    let Some(first) = catching.first() else {
        // No entry: an ELF program of a native arch simply runs.
        let native = crate::arch::ARCHES.iter().find(|a| {
            crate::arch::pattern_matches(a.magic, a.mask, &header)
                && matches!(world.native.get(a.name), Some(crate::model::Native::Yes(_)))
        });
        if let Some(a) = native {
            println!(
                "{file}: a {} program; the host runs it natively (no binfmt_misc entry is used)",
                a.name
            );
            return Ok(super::exit_status(config_broken));
        }
        println!(
            "{file}: no enabled binfmt_misc entry catches it; the kernel runs it natively \
             or refuses it (exec format error)"
        );
        return Ok(ExitCode::from(1));
    };
    let owner = |n: &str| {
        if world.owned.contains_key(n) {
            "owned by qus"
        } else {
            "not qus's"
        }
    };
    let e = &world.kernel[*first];
    let flags = e.spec.flags.to_string();
    println!(
        "{file}: {} (interpreter {}, flags {}, {})",
        clean(first),
        clean(&e.spec.interpreter.display().to_string()),
        if flags.is_empty() { "none" } else { &flags },
        owner(first)
    );
    for other in &catching[1..] {
        println!(
            "  also caught by {} ({}), which the kernel tries later",
            clean(other),
            owner(other)
        );
    }
    Ok(super::exit_status(config_broken))
}
