//! The `qus` command line: parse, set up, dispatch. One file per subcommand.

mod arches;
mod binfmt_compat;
mod config;
mod dry_run;
mod export;
mod go_match;
mod multiarch_compat;
mod pac_cost;
mod peers;
mod register;
mod report;
mod rootless;
mod status;
mod test;
mod toggle;
mod unregister;
pub(crate) mod values;
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

/// Each subcommand's options are built only when it runs (`defer`): clap
/// otherwise builds all of them, help texts included, on every start
/// (a fifth of clap's share of a cold `qus register`).
#[derive(Debug, Subcommand)]
#[command(defer = true)]
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
    /// Keep arches registered in the configuration (qusd keeps it), and register them.
    Enable(toggle::ToggleArgs),
    /// Tell which binfmt_misc entry the kernel uses for a file.
    Which(which::WhichArgs),
    /// Run a command with emulators, without root (own user namespace)
    ///
    /// Starts a user + mount namespace (the caller is root there, plus its
    /// subordinate ids), mounts a private binfmt_misc, registers, and runs
    /// CMD: `qus run -- ./hello-arm64`. Linux 6.7+.
    Run(rootless::RunArgs),
    /// Run a qus command in podman's rootless namespace, without root
    ///
    /// `qus podman register aarch64` is `podman unshare qus register
    /// aarch64`: every rootless container of the user then runs arm64
    /// programs. Linux 6.7+.
    Podman(rootless::PodmanArgs),
    /// Run a buildah command with emulators, without root
    ///
    /// `qus buildah build --platform linux/arm64 .` registers in the
    /// namespace of one `buildah unshare` and runs buildah there.
    /// Linux 6.7+.
    Buildah(rootless::BuildahArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// systemd binfmt.d(5) lines.
    #[value(name = "binfmt.d")]
    BinfmtD,
}

/// The arches named on the command line, by their canonical names: aliases
/// (`arm64`, `linux/arm/v7`) and entry names (`qemu-aarch64`) resolved,
/// `all` expanded to the whole table.
pub(crate) fn arch_names(names: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = vec![];
    for n in names {
        let found: Vec<&str> = if n == "all" {
            crate::arch::ARCHES.iter().map(|a| a.name).collect()
        } else {
            let by_entry = n.strip_prefix("qemu-").and_then(crate::arch::find);
            match crate::arch::find(n).or(by_entry) {
                Some(a) => vec![a.name],
                None => bail!("unknown arch {n:?} (see `qus arches`)"),
            }
        };
        for a in found {
            if !out.iter().any(|o| o == a) {
                out.push(a.to_string());
            }
        }
    }
    Ok(out)
}

/// Exit 0, or 1 when anything failed (the usual status of a command).
pub(crate) fn exit_status(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// "qusd (pid N) is running for this state dir", when a ready qusd is: it
/// will put its configuration back over what a one-off command changes.
pub(crate) fn daemon_note(common: &CommonArgs) -> Option<String> {
    let state = crate::state::StateDir::new(common.state_dir());
    let st = state.read_daemon_status()?;
    (st.ready && state.daemon_alive(&st) != crate::state::Liveness::Gone)
        .then(|| format!("qusd (pid {}) is running for this state dir and", st.pid))
}

/// Entry point of the `qus` binary.
pub fn main() -> ExitCode {
    // Die quietly on a closed pipe (`qus export | head -1`), as every
    // filter does: Rust ignores SIGPIPE and would panic in `println!`.
    // SAFETY: setting a signal's disposition to the default has no
    // preconditions; nothing else in qus handles SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // Started as `binfmt` (the image's drop-in for tonistiigi/binfmt).
    let argv: Vec<String> = std::env::args().collect();
    if argv.first().and_then(|a| a.rsplit('/').next()) == Some("binfmt") {
        return binfmt_compat::main(&argv[1..]);
    }
    // multiarch/qemu-user-static's `--reset -p yes` (the image's default
    // entry point is qus; qus's own command line has none of its options).
    if multiarch_compat::wants(&argv[1..]) {
        return multiarch_compat::main(&argv[1..]);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            if e.exit_code() == 2 {
                if let Some(answer) = peers::equivalent(&args) {
                    eprint!("{answer}");
                    return ExitCode::from(2);
                }
            }
            // clap: 0 for --help/--version, 2 for usage errors.
            let code = u8::try_from(e.exit_code()).unwrap_or(2);
            let _ = without_env_in_usage(e).print();
            return ExitCode::from(code);
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

/// A usage error as clap would give it without the `QUS_*` variables.
/// clap lists options that got their value from the environment in the
/// usage line of an error, as if the user had to type them ("Usage: qus
/// which --config-dir <DIR> --state-dir <DIR> <FILE>"); parsing again
/// with every `env` dropped gives the same error with the plain usage.
fn without_env_in_usage(e: clap::Error) -> clap::Error {
    use clap::CommandFactory;
    if e.exit_code() != 2 {
        return e;
    }
    fn drop_env(cmd: clap::Command) -> clap::Command {
        cmd.mut_args(|a| a.env(None)).mut_subcommands(drop_env)
    }
    match drop_env(Cli::command()).try_get_matches_from(std::env::args_os()) {
        Err(plain) if plain.kind() == e.kind() => plain,
        _ => e,
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
    // A directory named on purpose that is not there is a typo, not an
    // empty configuration. (qusd instead waits for it to appear.)
    for dir in cli
        .common
        .config_dirs
        .iter()
        .filter(|d| !d.as_os_str().is_empty())
    {
        if !dir.exists() && !matches!(cli.command, Command::Podman(_) | Command::Buildah(_)) {
            bail!(
                "configuration directory {} does not exist (given with --config-dir or QUS_CONFIG_DIRS)",
                dir.display()
            );
        }
    }
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
        Command::Run(a) => rootless::run(&cli.common, a),
        Command::Podman(a) => rootless::podman(&cli.common, a),
        Command::Buildah(a) => rootless::buildah(&cli.common, a),
    }
}
