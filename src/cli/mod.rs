//! The `qus` command line: parse, set up, dispatch. One file per subcommand.

mod arches;
mod config;
mod export;
mod register;
mod status;
mod test;
mod unregister;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self as cfg, Config, Source, Sourced};
use crate::engine::Context;
use crate::observe::Host;

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

/// Options shared by `qus` and `qusd`: where things are.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Configuration directory (repeatable; replaces the default list,
    /// lowest priority first). Env: QUS_CONFIG_DIRS=dir1:dir2
    #[arg(long = "config-dir", value_name = "DIR", global = true)]
    pub config_dirs: Vec<PathBuf>,
    /// Where binfmt_misc is (or is to be) mounted. Env: QUS_BINFMT_MISC
    #[arg(long, value_name = "PATH", global = true)]
    pub binfmt_misc: Option<PathBuf>,
    /// State directory (ownership records, lock). Env: QUS_STATE_DIR
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Pretend the host's machine is this (`uname -m` value), which decides
    /// what is native. Env: QUS_HOST_ARCH
    #[arg(long, value_name = "MACHINE", global = true)]
    pub host_arch: Option<String>,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, value_name = "LEVEL", global = true)]
    pub log_level: Option<String>,
}

impl CommonArgs {
    /// The configuration directories: `--config-dir`, else `QUS_CONFIG_DIRS`,
    /// else the defaults.
    pub fn config_dirs(&self) -> Vec<PathBuf> {
        if !self.config_dirs.is_empty() {
            return self.config_dirs.clone();
        }
        if let Some(list) = std::env::var_os("QUS_CONFIG_DIRS") {
            let dirs: Vec<PathBuf> = std::env::split_paths(&list)
                .filter(|p| !p.as_os_str().is_empty())
                .collect();
            if !dirs.is_empty() {
                return dirs;
            }
        }
        cfg::DEFAULT_DIRS.iter().map(PathBuf::from).collect()
    }

    /// Load the configuration and apply the command-line/environment overrides.
    pub fn load_config(&self) -> Result<Config> {
        let mut config = cfg::load(&self.config_dirs())?;
        if let Some(p) = &self.binfmt_misc {
            config.binfmt_path = Sourced {
                value: p.clone(),
                source: Source::Override("--binfmt-misc".into()),
            };
        } else if let Some(p) = std::env::var_os("QUS_BINFMT_MISC").filter(|p| !p.is_empty()) {
            config.binfmt_path = Sourced {
                value: PathBuf::from(p),
                source: Source::Override("QUS_BINFMT_MISC".into()),
            };
        }
        if !config.binfmt_path.value.is_absolute() {
            bail!(
                "binfmt_misc path {} ({}) must be absolute",
                config.binfmt_path.value.display(),
                config.binfmt_path.source
            );
        }
        Ok(config)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .or_else(|| {
                std::env::var_os("QUS_STATE_DIR")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(cfg::DEFAULT_STATE_DIR))
    }

    pub fn host(&self) -> Host {
        let forced = self.host_arch.clone().or_else(|| {
            std::env::var("QUS_HOST_ARCH")
                .ok()
                .filter(|s| !s.is_empty())
        });
        Host::detect(forced.as_deref())
    }

    /// Configuration + paths, ready for a reconcile.
    pub fn context(&self) -> Result<Context> {
        Ok(Context::new(
            self.load_config()?,
            self.state_dir(),
            self.host(),
        ))
    }
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

/// `error: top` then `  caused by: …` for each cause.
pub fn print_error(e: &anyhow::Error) {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
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
