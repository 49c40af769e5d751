//! The `qus` command line: parse, set up, dispatch. One file per subcommand.

mod arches;
mod config;
mod export;
mod register;
mod report;
mod status;
mod test;
mod unregister;

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::setup::{print_error, CommonArgs};

#[derive(Debug, Parser)]
#[command(
    name = "qus",
    version,
    about = "Register QEMU user-mode emulators with binfmt_misc, and keep them right",
    after_help = "Exit status: 0 ok, 1 error, 2 usage error."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show every arch and custom entry: state, interpreter, flags, owner.
    Status(status::StatusArgs),
    /// Register (one-shot reconcile) all configured arches, or those named.
    Register(register::RegisterArgs),
    /// Remove entries qus owns.
    Unregister(unregister::UnregisterArgs),
    /// Show the effective configuration with the source of each value.
    Config(config::ConfigArgs),
    /// Export the entries qus would register, in another tool's format.
    Export(export::ExportArgs),
    /// Prove each registered emulator runs a real foreign program.
    Test(test::TestArgs),
    /// List the built-in architecture table.
    Arches(arches::ArchesArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// systemd binfmt.d(5) lines.
    #[value(name = "binfmt.d")]
    BinfmtD,
}

/// Check that every name on the command line is an arch of the table.
pub(crate) fn check_arch_names(names: &[String]) -> Result<()> {
    for n in names {
        if crate::arch::find(n).is_none() {
            bail!("unknown arch {n:?} (see `qus arches`)");
        }
    }
    Ok(())
}

/// Entry point of the `qus` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap: 0 for --help/--version, 2 for usage errors.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let default_level = match cli.command {
        Command::Register(_) | Command::Unregister(_) => "info",
        _ => "warn",
    };
    crate::logging::init(
        cli.common.log_level.as_deref().unwrap_or(default_level),
        false,
    );
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Status(a) => status::run(&cli.common, a),
        Command::Register(a) => register::run(&cli.common, a),
        Command::Unregister(a) => unregister::run(&cli.common, a),
        Command::Config(a) => config::run(&cli.common, a),
        Command::Export(a) => export::run(&cli.common, a),
        Command::Test(a) => test::run(&cli.common, a),
        Command::Arches(a) => arches::run(&cli.common, a),
    }
}
