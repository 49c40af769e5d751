//! Observe: the one place that gathers what a pass needs to know. It reads
//! the kernel's entries (in match order) and global switch, the ownership
//! records, decides native arches, finds every emulator and takes its
//! facts, and returns it all as one [`World`]. Every command and every
//! daemon pass goes through [`observe`]; nothing else assembles these
//! inputs. What the facts mean for each entry is decided by the pure
//! `plan::want`; observe only asks it which emulators are worth a look.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::arch;
use crate::binfmt::{BinfmtMisc, KernelEntries};
use crate::config::Config;
use crate::model::{Host, NativeVerdicts, Skip, Want, Wanted, World};
use crate::plan::want::{self, Overrides};
use crate::probe;
use crate::safety;
use crate::state::StateDir;
use crate::userns::Instance;

mod distro;
mod emulators;
mod host;
pub(crate) mod loader_check;
mod native;
pub(crate) mod version;

pub use emulators::{identity_of, interpreters};
pub use host::{detect_host, HostFacts, Roots};

/// Where everything is: the configuration, binfmt_misc, the state dir and
/// the host. Built once per command (and per configuration in qusd).
#[derive(Debug, Clone)]
pub struct System {
    pub config: Config,
    pub binfmt: BinfmtMisc,
    pub state: StateDir,
    pub host: Host,
    /// Where the host's own files are.
    pub roots: Roots,
    /// Facts read from those files, once.
    pub facts: HostFacts,
    /// Where this process runs (host or a user namespace, which uid): read
    /// once, here, and handed down as a value.
    pub place: crate::userns::Place,
    /// QEMU versions asked so far (to choose between emulators).
    pub versions: crate::observe::version::Memo,
}

impl System {
    pub fn new(config: Config, state_dir: PathBuf, host: Host) -> System {
        let state = StateDir::new(state_dir);
        System {
            binfmt: BinfmtMisc::new(config.binfmt_path.value.clone()),
            versions: crate::observe::version::Memo::new(state.clone()),
            place: crate::userns::here().clone(),
            state,
            config,
            host,
            roots: Roots::host(),
            facts: HostFacts::default(),
        }
    }
}

/// What an observation is asked to take into account.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub overrides: Overrides,
    /// Native verdicts decided earlier (the daemon keeps them: the host
    /// does not change while it runs); `None`: decide now.
    pub native: Option<NativeVerdicts>,
    /// Other tools' entries to put back first, exactly as they were (the
    /// daemon's flush guard, `guard.others = true`).
    pub restore: KernelEntries,
    /// Entries whose emulator is still being written (the daemon holds
    /// them): what is wrong with a file half-way in is not worth a warning.
    pub holds: BTreeSet<String>,
    /// qusd's own records as its last pass left them: used instead of the
    /// state dir's when that is refused (made writable by others), so what
    /// this process registered is still repaired meanwhile.
    pub remembered: Option<crate::model::OwnedEntries>,
    /// Takeovers that failed in qusd's earlier passes (see
    /// [`crate::model::World::failed_takeovers`]).
    pub failed_takeovers: crate::model::FailedTakeovers,
}

/// The kernel's side: binfmt_misc's state and entries.
struct KernelView {
    mounted: bool,
    enabled: Option<bool>,
    entries: KernelEntries,
    match_order: Vec<String>,
}

impl KernelView {
    fn read(binfmt: &BinfmtMisc) -> Result<KernelView> {
        if !binfmt.is_mounted() {
            return Ok(KernelView {
                mounted: false,
                enabled: None,
                entries: KernelEntries::new(),
                match_order: Vec::new(),
            });
        }
        let listing = binfmt
            .entries()
            .with_context(|| format!("reading {}", binfmt.root().display()))?;
        for (name, why) in &listing.unparsable {
            tracing::warn!("cannot parse binfmt_misc entry {name}: {why}; leaving it alone");
        }
        Ok(KernelView {
            mounted: true,
            enabled: binfmt.enabled().ok(),
            entries: listing.entries,
            match_order: listing.order,
        })
    }

    /// Can the kernel use entries right now (mounted and switched on)?
    fn live(&self) -> bool {
        self.mounted && self.enabled == Some(true)
    }
}

/// Gather everything one pass needs. Warnings about inputs (unusable
/// ownership records, unparsable kernel entries, refused emulators) are
/// logged here, once per observation.
pub fn observe(system: &System, request: &Request) -> Result<World> {
    let kernel = KernelView::read(&system.binfmt)?;
    let (owned, owned_warning) = ownership_records(system, request);
    if let Some(w) = &owned_warning {
        tracing::warn!("{w}");
    }
    let deciding = start_native(system, request, &kernel, &owned);
    let dirs = safety::DirCache::default();
    let (wanted, (native, native_provisional, native_cache_key)) =
        wants(system, request, deciding, &dirs);
    warn_unusable(&system.config, &wanted, &request.holds);
    let handlers = handlers(&kernel.entries, &kernel.match_order, kernel.live());
    let broken_handlers = broken_handlers(&wanted, &handlers, &kernel.entries, &owned);
    let distro = distro::distro_entries(&kernel.entries, &owned, &wanted, &system.roots);
    let distro_same_file = distro::same_file_as_wanted(&distro, &kernel.entries, &wanted, &dirs);
    let (restorable, restore_refused) = restorable(&owned, &dirs);
    Ok(World {
        risky: risky_interpreters(&kernel.entries, &dirs),
        mounted: kernel.mounted,
        enabled: kernel.enabled,
        kernel: kernel.entries,
        match_order: kernel.match_order,
        owned,
        owned_warning,
        native,
        wanted,
        handlers,
        broken_handlers,
        distro,
        distro_same_file,
        restorable,
        restore_refused,
        records_unwritable: None,
        failed_takeovers: request.failed_takeovers.clone(),
        native_provisional,
        native_cache_key,
    })
}

/// The native verdicts: known already (qusd keeps them for the boot), or
/// decided now, the probes started to run while emulators are looked for.
fn start_native(
    system: &System,
    request: &Request,
    kernel: &KernelView,
    owned: &crate::model::OwnedEntries,
) -> native::Deciding {
    if let Some(known) = &request.native {
        return native::Deciding::known(known.clone());
    }
    // The listing is what the kernel consults for this process: mounted
    // here, readable, and not a parent namespace's.
    let listed = kernel.mounted
        && kernel.enabled.is_some()
        && instance(system.binfmt.root()) != Instance::Ancestor;
    let view = native::BinfmtView {
        live: kernel.live(),
        listed,
    };
    native::start(system, &kernel.entries, owned, view)
}

/// What is wanted: one want per arch, and the custom entries. The arches
/// the probes decide are looked at last, once they have; returns the
/// native verdicts too (as [`native::Deciding::finish`] gives them).
fn wants(
    system: &System,
    request: &Request,
    deciding: native::Deciding,
    dirs: &safety::DirCache,
) -> (Wanted, (NativeVerdicts, bool, Option<String>)) {
    let host = system.facts.view(&system.roots);
    let choice = emulators::Choice {
        dirs,
        versions: &system.versions,
    };
    let arch_want = |a: &arch::Arch, native: &NativeVerdicts| {
        let config = &system.config;
        let candidate = want::arch_skip(config, native, &request.overrides, a)
            .is_none()
            .then(|| emulators::arch_candidate(config, a, &choice))
            .flatten();
        want::arch_want(
            config,
            native,
            &request.overrides,
            a,
            candidate.as_ref(),
            host,
        )
    };
    let mut arch_wants: Vec<Option<Want>> = arch::ARCHES
        .iter()
        .map(|a| (!deciding.undecided.contains(&a.name)).then(|| arch_want(a, &deciding.verdicts)))
        .collect();
    let decided = deciding.finish(&system.host);
    for (slot, a) in arch_wants.iter_mut().zip(arch::ARCHES) {
        slot.get_or_insert_with(|| arch_want(a, &decided.0));
    }
    // A custom entry may catch any program the host runs itself: every
    // native arch's header, non-PIE and PIE, not only this executable's.
    let native_heads = native_heads(host.host_heads, &decided.0);
    let custom = custom_wants(
        &system.config,
        dirs,
        crate::model::HostView {
            host_heads: &native_heads,
            ..host
        },
    );
    let wanted = Wanted {
        items: arch_wants.into_iter().flatten().chain(custom).collect(),
    };
    (wanted, decided)
}

/// The headers of every program the host runs itself: its own, and each
/// native arch's probe as both ELF types.
fn native_heads(own: &[Vec<u8>], native: &NativeVerdicts) -> Vec<Vec<u8>> {
    let mut heads = own.to_vec();
    for a in arch::ARCHES {
        if matches!(native.get(a.name), Some(crate::model::Native::Yes(_))) {
            if let Some(p) = probe::find(a.name) {
                heads.extend(crate::binfmt::elf::both_types(p.program));
            }
        }
    }
    heads
}

/// Every kernel entry whose interpreter could be replaced by someone other
/// than root, with the safety rules' reason (the same rules qus applies to
/// what it registers). An interpreter that is missing, not executable or
/// not a regular file is a broken entry, not a way in: not listed here.
fn risky_interpreters(
    kernel: &crate::binfmt::KernelEntries,
    dirs: &safety::DirCache,
) -> std::collections::BTreeMap<String, String> {
    kernel
        .iter()
        .filter(|(_, e)| std::fs::symlink_metadata(&e.spec.interpreter).is_ok())
        .filter_map(|(name, e)| {
            let why = safety::check_interpreter(&e.spec.interpreter, dirs)
                .err()?
                .0;
            let replaceable = why.contains("owned by uid") || why.contains("writable");
            replaceable.then(|| {
                let c = if e.spec.flags.credentials {
                    "with C (every matching setuid program runs as root through it): "
                } else {
                    ""
                };
                (name.clone(), format!("{c}{why}"))
            })
        })
        .collect()
}

/// Which entries qus took over can go back: their interpreter exists and
/// passes the same safety rules as any qus registers (a directory on its
/// way may have become writable since). Those it fails, with why.
fn restorable(
    owned: &crate::model::OwnedEntries,
    dirs: &safety::DirCache,
) -> (
    std::collections::BTreeMap<String, crate::model::Identity>,
    std::collections::BTreeMap<String, String>,
) {
    let mut ok = std::collections::BTreeMap::new();
    let mut refused = std::collections::BTreeMap::new();
    for (name, o) in owned {
        let Some(r) = &o.replaced else { continue };
        match safety::check_interpreter(&r.interpreter, dirs) {
            Ok((_, meta)) => {
                ok.insert(name.clone(), emulators::identity_from(&meta));
            }
            Err(_) if !r.interpreter.exists() => {}
            Err(why) => {
                refused.insert(name.clone(), why.to_string());
            }
        }
    }
    (ok, refused)
}

/// The custom entries' wants, in configuration order.
fn custom_wants(
    config: &Config,
    dirs: &safety::DirCache,
    host: crate::model::HostView<'_>,
) -> Vec<Want> {
    config
        .entries
        .iter()
        .map(|(name, entry)| {
            let candidate = entry
                .enabled
                .then(|| emulators::candidate(entry.spec.interpreter.clone(), None, dirs));
            want::custom_want(name, entry, candidate.as_ref(), host)
        })
        .collect()
}

/// The ownership records: the state dir's, or qusd's own (from its last
/// pass) while the state dir is refused; with a warning when the state
/// dir's are unusable.
fn ownership_records(
    system: &System,
    request: &Request,
) -> (crate::model::OwnedEntries, Option<String>) {
    match (&request.remembered, system.state.refusal()) {
        // qusd says so when it starts and when it ends (see
        // daemon::memory), not on every pass meanwhile.
        (Some(mine), Some(_)) => (mine.clone(), None),
        _ => system.state.load(),
    }
}

/// Say why an entry that should work cannot: a configured interpreter
/// that is missing, or an emulator the safety rules refuse.
fn warn_unusable(config: &Config, wanted: &Wanted, holds: &BTreeSet<String>) {
    for want in wanted.items.iter().filter(|w| !holds.contains(&w.name)) {
        let configured = match &want.arch {
            Some(a) => config.arch.get(a).is_some_and(|o| o.interpreter.is_some()),
            None => true,
        };
        let (action, line) = match &want.want {
            Err(Skip::NoInterpreter(why)) if configured => (
                "missing-interpreter",
                format!("{} has no interpreter: {why} (as configured)", want.name),
            ),
            Err(Skip::Refused(why)) => ("refused", format!("refused {}: {why}", want.name)),
            _ => continue,
        };
        tracing::warn!(
            entry = %want.name,
            arch = want.arch.as_deref().unwrap_or(""),
            action,
            "{line}"
        );
    }
}

/// binfmt_misc's state before a pass touches it: the preparation's facts.
pub fn readiness(binfmt: &BinfmtMisc) -> crate::plan::Readiness {
    let mounted = binfmt.is_mounted();
    crate::plan::Readiness {
        mounted,
        enabled: mounted.then(|| binfmt.enabled().ok()).flatten(),
    }
}

/// Other tools' entries a flush wiped, each with the safety verdict on
/// its interpreter (the same rules as for qus's own interpreters).
pub fn flushed(entries: &KernelEntries) -> Vec<crate::plan::Flushed> {
    let dirs = safety::DirCache::default();
    entries
        .iter()
        .map(|(name, entry)| crate::plan::Flushed {
            name: name.clone(),
            entry: entry.clone(),
            refused: safety::check_interpreter(&entry.spec.interpreter, &dirs)
                .err()
                .map(|r| r.to_string()),
        })
        .collect()
}

/// Per arch, the enabled entries that catch its programs, in the kernel's
/// match order. A program of the arch is its probe when qus ships one,
/// else the arch's own magic (an ELF header prefix).
fn handlers(
    kernel: &KernelEntries,
    match_order: &[String],
    live: bool,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut all = std::collections::BTreeMap::new();
    if !live {
        return all;
    }
    for a in arch::ARCHES {
        let header: Vec<u8> = probe::find(a.name)
            .map(|p| p.program.to_vec())
            .unwrap_or_else(|| a.magic.to_vec());
        let catching: Vec<String> = match_order
            .iter()
            .filter(|name| {
                kernel
                    .get(*name)
                    .is_some_and(|e| e.enabled && e.spec.matcher.catches(&header))
            })
            .cloned()
            .collect();
        if !catching.is_empty() {
            all.insert(a.name.to_string(), catching);
        }
    }
    all
}

/// Per arch qus would yield to another tool's handler (`others =
/// "yield"` or `"yield-always"`), whether that handler runs the arch's probe: an entry
/// advertised but not working (Rosetta registered, its runtime not
/// mounted) would otherwise leave the arch broken. The probe runs through
/// the handler's interpreter directly, so qus's own entry, once
/// registered in front of it, does not answer for it.
fn broken_handlers(
    wanted: &Wanted,
    handlers: &std::collections::BTreeMap<String, Vec<String>>,
    kernel: &KernelEntries,
    owned: &crate::model::OwnedEntries,
) -> std::collections::BTreeMap<String, String> {
    let mut broken = std::collections::BTreeMap::new();
    for w in &wanted.items {
        let Some(arch) = &w.arch else { continue };
        if w.want.is_err() || w.others == crate::model::Others::Override {
            continue;
        }
        let Some(other) = handlers
            .get(arch)
            .and_then(|hs| hs.iter().find(|h| **h != w.name && !owned.contains_key(*h)))
        else {
            continue;
        };
        let (Some(entry), Some(probe)) = (kernel.get(other), probe::find(arch)) else {
            continue;
        };
        let ran = probe::run_through(probe, &entry.spec.interpreter, HANDLER_PROBE_TIMEOUT);
        if let Some(why) = ran.failure() {
            broken.insert(
                arch.clone(),
                format!(
                    "{other} ({}) fails the {arch} probe: {why}",
                    entry.spec.interpreter.display()
                ),
            );
        }
    }
    broken
}

/// How long another tool's handler may take to run a probe.
const HANDLER_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Which binfmt_misc instance a path reaches from here.
pub fn instance(root: &Path) -> Instance {
    crate::userns::instance_at(root)
}
