//! What `qus` and `qusd` share below their command lines: the common
//! options (where things are), building the [`System`] from them, and
//! printing an error chain. Both shells stand on this; neither imports
//! the other.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::config::{self as cfg, Config, Source, Sourced};
use crate::model::Host;
use crate::observe::{self, System};
use crate::userns;

/// Log levels; anything else is a usage error (a silently ignored
/// `warning` once hid qusd's own errors). Both binaries take them, so
/// they live here and qusd links no CLI code for them.
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Options shared by `qus` and `qusd`: where things are.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Configuration directory (repeatable; replaces the default list,
    /// lowest priority first).
    #[arg(
        long = "config-dir",
        value_name = "DIR",
        global = true,
        env = "QUS_CONFIG_DIRS",
        value_delimiter = ':'
    )]
    pub config_dirs: Vec<PathBuf>,
    /// Where binfmt_misc is (or is to be) mounted.
    #[arg(long, value_name = "PATH", global = true, env = "QUS_BINFMT_MISC")]
    pub binfmt_misc: Option<PathBuf>,
    /// State directory (ownership records, lock) [default: /run/qusd as
    /// host root, else $XDG_RUNTIME_DIR/qus, in a user namespace
    /// $XDG_RUNTIME_DIR/qus/userns-INODE].
    #[arg(long, value_name = "DIR", global = true, env = "QUS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Pretend the host's machine is this (`uname -m` value), which decides
    /// what is native.
    #[arg(long, value_name = "MACHINE", global = true, env = "QUS_HOST_ARCH")]
    pub host_arch: Option<String>,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, value_name = "LEVEL", global = true,
          value_parser = clap::builder::PossibleValuesParser::new(LOG_LEVELS))]
    pub log_level: Option<String>,
}

impl CommonArgs {
    /// The options given explicitly, as arguments again: for running qus
    /// once more inside a namespace (`qus podman`, `qus buildah`), so that
    /// `qus --log-level debug podman status` keeps its level.
    pub fn as_args(&self) -> Vec<std::ffi::OsString> {
        let mut out: Vec<std::ffi::OsString> = vec![];
        let mut push = |name: &str, value: &std::ffi::OsStr| {
            out.push(name.into());
            out.push(value.to_owned());
        };
        for d in self
            .config_dirs
            .iter()
            .filter(|p| !p.as_os_str().is_empty())
        {
            push("--config-dir", d.as_os_str());
        }
        if let Some(p) = &self.binfmt_misc {
            push("--binfmt-misc", p.as_os_str());
        }
        if let Some(p) = &self.state_dir {
            push("--state-dir", p.as_os_str());
        }
        if let Some(h) = &self.host_arch {
            push("--host-arch", std::ffi::OsStr::new(h));
        }
        if let Some(l) = &self.log_level {
            push("--log-level", std::ffi::OsStr::new(l));
        }
        out
    }

    /// The configuration directories: `--config-dir` / `QUS_CONFIG_DIRS`,
    /// else the defaults; in a child user namespace the user's
    /// `$XDG_CONFIG_HOME/qus.d` comes last (highest priority). It is not
    /// read on the host, where a user's file must never decide what root
    /// registers.
    pub fn config_dirs(&self) -> Vec<PathBuf> {
        let given: Vec<PathBuf> = self
            .config_dirs
            .iter()
            .filter(|p| !p.as_os_str().is_empty())
            .cloned()
            .collect();
        if !given.is_empty() {
            return given;
        }
        let mut dirs: Vec<PathBuf> = cfg::DEFAULT_DIRS.iter().map(PathBuf::from).collect();
        if !userns::here().initial {
            dirs.extend(userns::config_home().map(|h| h.join("qus.d")));
        }
        dirs
    }

    /// Load the configuration and apply the `--binfmt-misc` override.
    pub fn load_config(&self) -> Result<Config> {
        self.load_config_with(&[])
    }

    /// [`Self::load_config`] with extra files applied last, as if dropped
    /// in (`qus config --check FILE…`).
    pub fn load_config_with(&self, extra: &[PathBuf]) -> Result<Config> {
        let config = cfg::load_with(&self.config_dirs(), extra)?;
        self.with_overrides(config)
    }

    /// A system for commands that only read: when the configuration does
    /// not load, say why (file:line) on stderr and go on without the
    /// broken drop-ins (or with the built-in configuration), so the
    /// kernel's entries still show. `true` with it: the configuration is
    /// broken (the command then exits 1). Commands that write refuse.
    pub fn system_for_reading(&self) -> Result<(System, bool)> {
        self.namespace_defaults_exist()?;
        match self.load_config() {
            Ok(config) => Ok((self.system_with(config), false)),
            Err(e) if e.downcast_ref::<cfg::ConfigError>().is_some() => {
                let (config, errors) = cfg::load_without_broken(&self.config_dirs());
                let mut skipped = Vec::new();
                for err in &errors {
                    eprintln!("error: {err}");
                    skipped.extend(err.path.as_ref().map(|p| p.display().to_string()));
                }
                let with = if errors.iter().any(|e| e.path.is_none()) {
                    "the built-in configuration".to_string()
                } else {
                    format!("the configuration without {}", skipped.join(", "))
                };
                eprintln!(
                    "qus: warning: showing what the kernel has with {with}; commands that \
                     change anything refuse until the configuration is fixed"
                );
                Ok((self.system_with(self.with_overrides(config)?), true))
            }
            Err(e) => Err(e),
        }
    }

    /// The command line's and the namespace's say over the configuration:
    /// `--binfmt-misc`, and a user namespace's own binfmt_misc.
    fn with_overrides(&self, mut config: Config) -> Result<Config> {
        if let Some(p) = self
            .binfmt_misc
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
        {
            config.binfmt_path = Sourced {
                value: p.clone(),
                source: Source::Override("--binfmt-misc or QUS_BINFMT_MISC".into()),
            };
        } else if config.binfmt_path.source == Source::Default && !userns::here().initial {
            // In a child user namespace the default path is the host's
            // instance (read-only from here, or not mounted at all): the
            // namespace's own instance goes under the runtime dir instead.
            if let Some(run) = userns::runtime_dir() {
                config.binfmt_path = Sourced {
                    value: run.join("qus").join("binfmt_misc"),
                    source: Source::Override(
                        "user namespace default ($XDG_RUNTIME_DIR/qus/binfmt_misc)".into(),
                    ),
                };
            }
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

    /// Where [`Self::state_dir`] comes from, for `qus config`.
    pub fn state_dir_source(&self) -> &'static str {
        if self
            .state_dir
            .as_ref()
            .is_some_and(|p| !p.as_os_str().is_empty())
        {
            "--state-dir or QUS_STATE_DIR"
        } else if userns::here().rootless() && userns::runtime_dir().is_some() {
            "default without host root: $XDG_RUNTIME_DIR/qus"
        } else {
            "built-in default"
        }
    }

    /// `--state-dir`, else `/run/qusd` for host root, else
    /// `$XDG_RUNTIME_DIR/qus` (`/run/user/UID/qus`) for everyone else.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(d) = self
            .state_dir
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
        {
            return d.clone();
        }
        let place = userns::here();
        if place.rootless() {
            if let Some(run) = userns::runtime_dir() {
                let base = run.join("qus");
                // Each user namespace has its own binfmt_misc instance, so
                // its own records: podman's long-lived namespace and a
                // `buildah unshare` session must not overwrite each other's.
                return match (place.initial, userns::namespace_id()) {
                    (false, Some(ino)) => base.join(format!("userns-{ino}")),
                    _ => base,
                };
            }
        }
        PathBuf::from(cfg::DEFAULT_STATE_DIR)
    }

    pub fn host(&self) -> Host {
        observe::detect_host(self.host_arch.as_deref().filter(|s| !s.is_empty()))
    }

    /// Configuration + paths, ready for a pass.
    pub fn system(&self) -> Result<System> {
        self.namespace_defaults_exist()?;
        Ok(self.system_with(self.load_config()?))
    }

    /// In a child user namespace qus's defaults live under
    /// `$XDG_RUNTIME_DIR/qus` (state, and the namespace's own
    /// binfmt_misc). Without a runtime dir there is no such default, and
    /// falling back to the host's `/run/qusd` and binfmt_misc would write
    /// where the namespace has no business: say what is missing instead.
    /// A container whose init shares the namespace (rootless podman, a
    /// pod with user namespaces) keeps the plain defaults: its `/run` and
    /// binfmt_misc are its own.
    pub fn namespace_defaults_exist(&self) -> Result<()> {
        let given = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| !p.as_os_str().is_empty());
        if userns::here().initial
            || userns::runtime_dir().is_some()
            || userns::own_container()
            || (given(&self.state_dir) && given(&self.binfmt_misc))
        {
            return Ok(());
        }
        bail!(
            "in a user namespace qus keeps its state and its binfmt_misc under \
             $XDG_RUNTIME_DIR/qus, and XDG_RUNTIME_DIR is not set (nor is there a \
             /run/user/{}): set it, or give --state-dir and --binfmt-misc",
            userns::here().user
        )
    }

    /// A system for a configuration loaded earlier.
    pub fn system_with(&self, config: Config) -> System {
        System::new(config, self.state_dir(), self.host())
    }
}

/// `error: top` then `  caused by: …` for each cause, and for a refused
/// permission, what to do about it (never a bare "Permission denied").
pub fn print_error(e: &anyhow::Error) {
    // Names in errors come from the system (a drop-in called "a\nb.toml"):
    // shown escaped, so they can neither forge a line nor drive the terminal.
    eprintln!("error: {}", crate::escape::clean(&e.to_string()));
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {}", crate::escape::clean(&cause.to_string()));
    }
    let denied = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    });
    // (Host root in a namespace of its own is denied for other reasons.)
    if denied && userns::here().rootless() && userns::here().user != 0 {
        eprintln!(
            "  hint: this needs root: run it with sudo. Without root, point --state-dir / \
             QUS_STATE_DIR and --config-dir / QUS_CONFIG_DIRS at directories of your own, or \
             use a user namespace of your own: `qus podman`, `qus run`, `qus buildah` \
             (README: \"Without root\")"
        );
    }
}
