//! The `qus` command line: parse, set up, dispatch. One file per subcommand.

mod arches;
mod config;
mod export;
mod register;
mod report;
mod status;
mod test;
mod toggle;
mod unregister;
mod which;

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
    /// Disable arches in the configuration (qusd keeps it), and unregister them.
    Disable(toggle::ToggleArgs),
    /// Undo `qus disable` for these arches, and register them again.
    Enable(toggle::ToggleArgs),
    /// Tell which binfmt_misc entry the kernel uses for a file.
    Which(which::WhichArgs),
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

/// "qusd (pid N) is running for this state dir", when a ready qusd is: it
/// will put its configuration back over what a one-off command changes.
pub(crate) fn daemon_note(common: &CommonArgs) -> Option<String> {
    let st = crate::state::StateDir::new(common.state_dir()).read_daemon_status()?;
    (st.ready && crate::state::process_start_time(st.pid) == Some(st.start_time))
        .then(|| format!("qusd (pid {}) is running for this state dir and", st.pid))
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
        Command::Register(_)
        | Command::Unregister(_)
        | Command::Disable(_)
        | Command::Enable(_) => "info",
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
        Command::Disable(a) => toggle::run(&cli.common, a, true),
        Command::Enable(a) => toggle::run(&cli.common, a, false),
        Command::Which(a) => which::run(&cli.common, a),
    }
}
