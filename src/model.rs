//! The vocabulary every layer shares, as plain data: what an interpreter
//! file is, what qus owns, what it wants, and the whole observed world.
//!
//! Nothing here does I/O and nothing here imports from the layers above
//! (observe, plan, apply, the shells), so every arrow points down to this
//! module and there are no cycles.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::binfmt::{EntrySpec, KernelEntries};

/// Identity of an interpreter file: with `F` the kernel keeps the file it
/// opened at registration, so a change of any of these means an upgrade
/// that only a re-registration makes the kernel see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

/// Facts about the host that decide what is native.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Kernel machine name (`uname -m`) or the override.
    pub machine: String,
    pub family: String,
}

/// Does the host run an arch itself? Decided by running the arch's probe
/// when no binfmt_misc entry can catch it (an aarch64 kernel without
/// AArch32, or x86_64 booted with `ia32_emulation=0`, fails the family
/// guess); otherwise by the family rule of `qemu-binfmt-conf.sh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Native {
    Yes(String),
    No(String),
}

/// Native verdicts by arch name.
pub type NativeVerdicts = BTreeMap<String, Native>;

/// What qus recorded when it registered (or adopted) an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub arch: Option<String>,
    pub spec: EntrySpec,
    pub identity: Option<Identity>,
    /// The same-named entry qus took over, if any: put back when qus
    /// unregisters this one.
    pub replaced: Option<EntrySpec>,
}

/// Which same-named entries that qus did not register it may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Takeover {
    /// Only the distribution's own (registered from its binfmt.d files,
    /// interpreter one of its QEMU files or wrappers); others are left in
    /// place as `conflict`.
    Distro,
    /// Every one (`takeover = true`).
    All,
    /// None (`takeover = false`).
    Never,
}

impl std::fmt::Display for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Takeover::Distro => "\"distro\"",
            Takeover::All => "true",
            Takeover::Never => "false",
        })
    }
}

impl std::fmt::Display for Others {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Others::Yield => "\"yield\"",
            Others::Override => "\"override\"",
            Others::YieldAlways => "\"yield-always\"",
        })
    }
}

/// What to do when another entry, under another name, already handles an
/// arch (Rosetta, FEX-Emu, box64, a hand-made wrapper).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Others {
    /// Leave the arch to it; register when it goes away.
    Yield,
    /// Register anyway (the newest entry wins: qus's shadows the other).
    Override,
    /// Leave the arch to it even when it fails qus's probe.
    YieldAlways,
}

/// Ownership records by entry name.
pub type OwnedEntries = BTreeMap<String, Owned>;

/// A registration qus wants, with the identity of its interpreter file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub spec: EntrySpec,
    pub identity: Identity,
}

/// What was found on disk for one entry's interpreter: the facts its
/// want is decided from (by `plan::want`, which reads no file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The emulator found in the search path, or the configured path.
    pub path: PathBuf,
    /// Its first bytes (`None`: it could not be read).
    pub head: Option<Vec<u8>>,
    /// The loader it asks for, if it is a dynamically linked ELF.
    pub loader: Option<String>,
    /// The interpreter safety rules' verdict on it.
    pub check: InterpreterCheck,
}

/// The interpreter safety rules' verdict on a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpreterCheck {
    /// It passes: the file it resolves to, and that file's identity.
    Safe {
        resolved: PathBuf,
        identity: Identity,
    },
    /// There is no such file.
    Missing,
    /// It is there but fails the rules (the reason).
    Refused(String),
}

/// Facts about the running host that decide whether an entry is safe to
/// register here.
#[derive(Debug, Clone, Copy)]
pub struct HostView<'a> {
    /// Does the kernel tell interpreters about `P` (Linux 5.12+)?
    pub kernel_has_p_bit: bool,
    /// Headers of the programs the host's own loader runs: this very
    /// executable's first bytes as both ELF types (`ET_EXEC` and
    /// `ET_DYN`: non-PIE and PIE programs), and for custom entries also
    /// those of every native arch (its probe's header, both types).
    pub host_heads: &'a [Vec<u8>],
}

/// Why an entry is not wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not targeted, excluded, or disabled in configuration.
    Excluded(String),
    /// The host runs this arch itself.
    Native(String),
    /// No emulator file found.
    NoInterpreter(String),
    /// An emulator was found but fails the safety rules.
    Refused(String),
}

/// One entry qus has an opinion about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub name: String,
    /// The table arch for qemu entries; `None` for custom entries.
    pub arch: Option<String>,
    pub want: Result<Desired, Skip>,
    /// What to do when another entry already handles the arch.
    pub others: Others,
}

/// Everything qus has an opinion about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub items: Vec<Want>,
}

/// A takeover that failed: what qus tried to register (and the file it
/// was), what the other tool's entry was, and why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedTakeover {
    pub wanted: EntrySpec,
    pub identity: Identity,
    pub theirs: EntrySpec,
    pub why: String,
}

/// Failed takeovers by entry name.
pub type FailedTakeovers = BTreeMap<String, FailedTakeover>;

/// Everything one pass knows, gathered once by `observe::observe` and
/// then only read: the planner, the status report and `qus test` all
/// consume this one value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct World {
    /// Is binfmt_misc mounted at the configured path?
    pub mounted: bool,
    /// Its global switch (`None` when not mounted or unreadable).
    pub enabled: Option<bool>,
    /// The kernel's entries by name.
    pub kernel: KernelEntries,
    /// Entry names in the kernel's match order: the entry tried first
    /// comes first.
    pub match_order: Vec<String>,
    /// The ownership records.
    pub owned: OwnedEntries,
    /// Why the records could not be (fully) used, if so.
    pub owned_warning: Option<String>,
    /// Native verdicts for the arches that can be native here.
    pub native: NativeVerdicts,
    /// What qus wants, entry by entry.
    pub wanted: Wanted,
    /// Per arch, the enabled entries that catch its programs, in the
    /// kernel's match order (the first is the one the kernel uses).
    pub handlers: BTreeMap<String, Vec<String>>,
    /// Per arch, why another tool's handler that qus would yield to fails
    /// the arch's probe (run through its interpreter): qus registers its
    /// own then, unless `others = "yield-always"`.
    pub broken_handlers: BTreeMap<String, String>,
    /// Kernel entries the distribution registered (from its binfmt.d
    /// files: the interpreter is one of its QEMU files or wrappers).
    pub distro: std::collections::BTreeSet<String>,
    /// The distribution's entries whose interpreter is the very file qus
    /// would register (by device and inode, through its links) and passes
    /// the safety rules: adopted as they are when their magic and flags
    /// also do what qus's would (see `plan::adoptable`), so a boot after
    /// `systemd-binfmt` writes nothing for them.
    pub distro_same_file: std::collections::BTreeSet<String>,
    /// Kernel entries, qus's or any tool's, whose interpreter someone
    /// other than root could replace (not root's, writable by others, or
    /// reached through a directory or link others control), with why: an
    /// entry whose interpreter a user can swap runs every matching program
    /// through that user's code, and with `C` every matching setuid
    /// program as root (a known persistence trick).
    pub risky: BTreeMap<String, String>,
    /// Owned entries whose replaced entry can be put back (its
    /// interpreter still exists and passes the checks), with the identity
    /// of the file that interpreter is now (through its links).
    pub restorable: std::collections::BTreeMap<String, Identity>,
    /// Owned entries whose replaced entry would go back with an
    /// interpreter that now fails the safety rules, and why: not put back
    /// (and qus's entry not removed) until that is fixed.
    pub restore_refused: BTreeMap<String, String>,
    /// Why ownership records cannot be written in this pass, if so: then
    /// nothing is taken over, as what it replaces could not be recorded.
    pub records_unwritable: Option<String>,
    /// Takeovers that failed earlier (qusd's memory): not tried again while
    /// neither side has changed, so another tool's entry is not removed and
    /// put back on every pass.
    pub failed_takeovers: FailedTakeovers,
    /// Another tool's entry kept a native probe from telling: the native
    /// verdicts hold for now only and must not be kept.
    pub native_provisional: bool,
    /// Where to keep native verdicts decided in this observation (boot
    /// id and machine), when they took a child or a probe and may be kept:
    /// saving them is the pass's step, not the observation's.
    pub native_cache_key: Option<String>,
}

impl World {
    /// Can the kernel use entries right now (mounted and switched on)?
    pub fn binfmt_live(&self) -> bool {
        self.mounted && self.enabled == Some(true)
    }

    /// The entry the kernel would use for a program starting with
    /// `header`: the first enabled entry in match order that catches it.
    pub fn catcher(&self, header: &[u8]) -> Option<(&str, &crate::binfmt::KernelEntry)> {
        if !self.binfmt_live() {
            return None;
        }
        self.match_order.iter().find_map(|name| {
            let e = self.kernel.get(name)?;
            (e.enabled && e.spec.matcher.catches(header)).then_some((name.as_str(), e))
        })
    }
}
