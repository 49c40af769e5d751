//! `qus arches`: the built-in table.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::CommonArgs;
use crate::{arch, escape};

#[derive(Debug, Args)]
pub struct ArchesArgs {
    /// Also print each arch's magic and mask.
    #[arg(long)]
    pub verbose: bool,
}

pub fn run(common: &CommonArgs, args: &ArchesArgs) -> Result<ExitCode> {
    let host = common.host();
    // Columns as wide as their longest value (qemu-sparc32plus,
    // qemu-microblazeel), never broken.
    let width = |f: &dyn Fn(&arch::Arch) -> usize, title: &str| {
        arch::ARCHES
            .iter()
            .map(f)
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let w_arch = width(&|a| a.name.len(), "ARCH");
    let w_emu = width(&|a| a.emulator.len() + "qemu-".len(), "EMULATOR");
    let w_family = width(&|a| a.family.len(), "FAMILY");
    println!(
        "{:<w_arch$} {:<w_emu$} {:<w_family$} {:<6} ALIASES",
        "ARCH", "EMULATOR", "FAMILY", "NATIVE"
    );
    for a in arch::ARCHES {
        let line = format!(
            "{:<w_arch$} {:<w_emu$} {:<w_family$} {:<6} {}",
            a.name,
            format!("qemu-{}", a.emulator),
            a.family,
            if a.family == host.family { "yes" } else { "no" },
            arch::aliases_of(a.name).collect::<Vec<_>>().join(" ")
        );
        println!("{}", line.trim_end());
        if args.verbose {
            println!("    magic {}", escape::escape_all(a.magic));
            println!("    mask  {}", escape::escape_all(a.mask));
        }
    }
    Ok(ExitCode::SUCCESS)
}
