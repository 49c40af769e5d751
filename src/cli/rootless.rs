//! Emulation without host root: `qus run`, `qus podman`, `qus buildah`.
//!
//! All three rest on one kernel feature (Linux 6.7): a user namespace may
//! mount a binfmt_misc instance of its own, which the kernel consults for
//! every program run in that namespace or below it. No host entry is
//! written and no host privilege is needed.
//!
//! - `qus run -- CMD`: a new user + mount namespace for CMD alone.
//! - `qus podman ARGS`: `qus ARGS` inside podman's rootless namespace,
//!   which lives as long as podman's pause process; every rootless
//!   container of the user runs there.
//! - `qus buildah ARGS`: buildah makes a new namespace per invocation, so
//!   registration and the buildah command run in one `buildah unshare`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::register::{self, RegisterArgs};
use crate::setup::CommonArgs;
use crate::userns;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Arches to register (comma-separated; default: all configured).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = super::values::ArchParser, hide_possible_values = true)]
    pub arch: Vec<String>,
    /// Use the namespace this process is already in (made by `buildah
    /// unshare` for `qus buildah`) instead of a new one.
    #[arg(long, hide = true)]
    pub here: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct PodmanArgs {
    /// The qus command to run inside podman's namespace, e.g. `register
    /// aarch64` or `status`.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "QUS-ARGS"
    )]
    pub args: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct BuildahArgs {
    /// Arches to register (comma-separated; default: all configured).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = super::values::ArchParser, hide_possible_values = true)]
    pub arch: Vec<String>,
    /// The buildah command, e.g. `build --platform linux/arm64 .`.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "BUILDAH-ARGS"
    )]
    pub args: Vec<OsString>,
}

/// `qus run`: enter a namespace of our own, give it a private binfmt_misc
/// with the wanted entries, exec CMD. CMD's exit status is ours (exec).
pub fn run(common: &CommonArgs, args: &RunArgs) -> Result<ExitCode> {
    needs_own_instance("run")?;
    let arches = super::arch_names(&args.arch)?;
    if !args.here {
        userns::enter_new()?;
    }
    private_runtime_dir()?;
    let register_args = RegisterArgs {
        arches: arches.clone(),
        flags: None,
        dry_run: false,
        json: false,
        quiet: true,
    };
    let code = register::run(common, &register_args)?;
    if code != ExitCode::SUCCESS && !arches.is_empty() {
        bail!("not every requested arch could be registered; not running the command");
    }
    let (program, rest) = args.command.split_first().context("no command given")?;
    let err = exec_plain(program, rest);
    let hint = if err.raw_os_error() == Some(libc::ENOEXEC) {
        " (no binfmt_misc entry matches it: is its arch registered? see `qus status`)"
    } else {
        ""
    };
    eprintln!(
        "error: cannot run {}: {err}{hint}",
        Path::new(program).display()
    );
    // As env(1) and shells do: 127 not found, 126 found but not runnable.
    Ok(ExitCode::from(
        if err.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
    ))
}

/// `execv` without the shell fallback of `execvp` (glibc runs a file the
/// kernel refused with ENOEXEC as a shell script, which turns "no
/// emulator for this arch" into a shell syntax error). Returns only on
/// failure.
fn exec_plain(program: &OsString, args: &[OsString]) -> std::io::Error {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let path = if program.as_bytes().contains(&b'/') {
        Some(std::path::PathBuf::from(program))
    } else {
        userns::find_in_path(&program.to_string_lossy())
    };
    let Some(path) = path else {
        return std::io::Error::new(std::io::ErrorKind::NotFound, "not found on PATH");
    };
    let to_c = |s: &[u8]| CString::new(s).map_err(|_| std::io::ErrorKind::InvalidInput);
    let (Ok(cpath), Ok(argv)) = (
        to_c(path.as_os_str().as_bytes()),
        std::iter::once(program)
            .chain(args)
            .map(|a| to_c(a.as_bytes()))
            .collect::<Result<Vec<CString>, _>>(),
    ) else {
        return std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a NUL byte in the command",
        );
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: `cpath` and every `argv` string are NUL-terminated and
    // outlive the call; `ptrs` is NULL-terminated. execv only returns on
    // failure, with errno set.
    unsafe { libc::execv(cpath.as_ptr(), ptrs.as_ptr()) };
    std::io::Error::last_os_error()
}

/// In a namespace made for one command, put a tmpfs over the user's
/// `$XDG_RUNTIME_DIR/qus`: the mount point and records live and die with
/// the namespace, and the user's real directory is never touched.
fn private_runtime_dir() -> Result<()> {
    // Root rarely has a login session's runtime dir: make the one logind
    // would (`/run/user/0`). Only the empty directory shows on the host;
    // what qus puts in it lives on the tmpfs below, in this namespace.
    if userns::runtime_dir().is_none() && userns::here().user == 0 {
        use std::os::unix::fs::DirBuilderExt;
        let dir = Path::new("/run/user/0");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let Some(run) = userns::runtime_dir() else {
        bail!(
            "no runtime directory: set XDG_RUNTIME_DIR (or create /run/user/{}), \
             or give --state-dir and --binfmt-misc",
            userns::here().user
        );
    };
    let dir = run.join("qus");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    rustix::mount::mount(
        "qus",
        &dir,
        "tmpfs",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        Some(c"mode=0700,size=1m"),
    )
    .with_context(|| format!("mounting a private tmpfs on {}", dir.display()))?;
    Ok(())
}

/// `qus podman ARGS`: `podman unshare qus ARGS` (options given before
/// `podman` go along).
pub fn podman(common: &CommonArgs, args: &PodmanArgs) -> Result<ExitCode> {
    needs_own_instance("podman")?;
    let qus = std::env::current_exe().context("finding the qus executable")?;
    let err = tool("podman")?
        .arg("unshare")
        .arg(qus)
        .args(common.as_args())
        .args(&args.args)
        .exec();
    bail!("cannot run podman: {err}")
}

/// `qus buildah ARGS`: `buildah unshare qus run --here -- buildah ARGS`.
pub fn buildah(common: &CommonArgs, args: &BuildahArgs) -> Result<ExitCode> {
    needs_own_instance("buildah")?;
    let qus = std::env::current_exe().context("finding the qus executable")?;
    let mut cmd = tool("buildah")?;
    cmd.arg("unshare")
        .arg("--")
        .arg(qus)
        .args(common.as_args())
        .args(["run", "--here"]);
    if !args.arch.is_empty() {
        cmd.arg(format!("--arch={}", args.arch.join(",")));
    }
    let err = cmd.arg("--").arg("buildah").args(&args.args).exec();
    bail!("cannot run buildah: {err}")
}

/// Refuse up front, naming the kernel needed, where a user namespace cannot
/// have a binfmt_misc of its own (before Linux 6.7: Debian 12's 6.1,
/// Ubuntu 22.04's 5.15, RHEL 9's 5.14), rather than fail later on a mount
/// with a bare "permission denied".
fn needs_own_instance(command: &str) -> Result<()> {
    match userns::kernel_at_least(6, 7) {
        (_, true) => Ok(()),
        (release, false) => bail!(
            "`qus {command}` needs Linux 6.7 or later (a user namespace's own binfmt_misc); \
             this is Linux {release}. Here only root can register, host-wide: `sudo qus register`"
        ),
    }
}

/// A container tool, or an error saying what to install.
fn tool(name: &str) -> Result<Command> {
    match userns::find_in_path(name) {
        Some(path) => Ok(Command::new(path)),
        None => bail!("{name} is not installed (or not on PATH): install the {name} package"),
    }
}
