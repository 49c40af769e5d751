//! Observe: the one place that gathers what a pass needs to know. It reads
//! the kernel's entries (in match order) and global switch, the ownership
//! records, decides native arches, finds and checks every emulator, and
//! returns it all as one [`World`]. Every command and every daemon pass
//! goes through [`observe`]; nothing else assembles these inputs.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::arch::{self, Arch};
use crate::binfmt::{BinfmtMisc, EntrySpec, Flags, KernelEntries, Matcher};
use crate::config::Config;
use crate::model::{
    Desired, Host, Identity, Instance, Native, NativeVerdicts, Others, OwnedEntries, Skip, Want,
    Wanted, World,
};
use crate::probe;
use crate::safety;
use crate::state::StateDir;

/// Where everything is: the configuration, binfmt_misc, the state dir and
/// the host. Built once per command (and per configuration in qusd).
#[derive(Debug, Clone)]
pub struct System {
    pub config: Config,
    pub binfmt: BinfmtMisc,
    pub state: StateDir,
    pub host: Host,
}

impl System {
    pub fn new(config: Config, state_dir: PathBuf, host: Host) -> System {
        System {
            binfmt: BinfmtMisc::new(config.binfmt_path.value.clone()),
            state: StateDir::new(state_dir),
            config,
            host,
        }
    }
}

/// Run-time adjustments from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `qemu.targets` for this run (`qus register ARCH…`).
    pub targets: Option<Vec<String>>,
    /// Replaces the flags of every qemu entry (`--flags`).
    pub flags: Option<Flags>,
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
}

/// Gather everything one pass needs. Warnings about inputs (unusable
/// ownership records, unparsable kernel entries, refused emulators) are
/// logged here, once per observation.
pub fn observe(system: &System, request: &Request) -> Result<World> {
    let mounted = system.binfmt.is_mounted();
    let (enabled, kernel, match_order) = if mounted {
        let listing = system
            .binfmt
            .entries()
            .with_context(|| format!("reading {}", system.binfmt.root().display()))?;
        for (name, why) in &listing.unparsable {
            tracing::warn!("cannot parse binfmt_misc entry {name}: {why}; leaving it alone");
        }
        (system.binfmt.enabled().ok(), listing.entries, listing.order)
    } else {
        (None, KernelEntries::new(), Vec::new())
    };
    let (owned, owned_warning) = system.state.load();
    if let Some(w) = &owned_warning {
        tracing::warn!("{w}");
    }
    // Probes run while the emulators are looked for: the arches they
    // decide are looked at last.
    let deciding = match &request.native {
        Some(known) => Deciding::known(known.clone()),
        None => {
            // The listing is what the kernel consults for this process:
            // mounted here, readable, and not a parent namespace's.
            let listed = mounted
                && enabled.is_some()
                && instance(system.binfmt.root()) != Instance::Ancestor;
            let binfmt = BinfmtView {
                live: mounted && enabled == Some(true),
                listed,
            };
            native_start(system, &kernel, &owned, binfmt)
        }
    };
    let dirs = safety::DirCache::default();
    let mut arch_wants: Vec<Option<Want>> = arch::ARCHES
        .iter()
        .map(|a| {
            (!deciding.undecided.contains(&a.name)).then(|| {
                want_arch(
                    &system.config,
                    &deciding.verdicts,
                    &request.overrides,
                    a,
                    &dirs,
                )
            })
        })
        .collect();
    let custom = custom_wants(&system.config, &dirs);
    let (native, native_provisional, native_cache_key) = deciding.finish(&system.host);
    for (slot, a) in arch_wants.iter_mut().zip(arch::ARCHES) {
        if slot.is_none() {
            *slot = Some(want_arch(
                &system.config,
                &native,
                &request.overrides,
                a,
                &dirs,
            ));
        }
    }
    let wanted = Wanted {
        items: arch_wants.into_iter().flatten().chain(custom).collect(),
    };
    for want in &wanted.items {
        let configured = match &want.arch {
            Some(a) => system
                .config
                .arch
                .get(a)
                .is_some_and(|o| o.interpreter.is_some()),
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
    let live = mounted && enabled == Some(true);
    let handlers = handlers(&kernel, &match_order, live);
    let distro = distro_entries(&kernel, &owned, &wanted);
    let restorable = owned
        .iter()
        .filter(|(_, o)| o.replaced.as_ref().is_some_and(|r| r.interpreter.exists()))
        .map(|(name, _)| name.clone())
        .collect();
    Ok(World {
        mounted,
        enabled,
        kernel,
        match_order,
        owned,
        owned_warning,
        native,
        wanted,
        handlers,
        distro,
        restorable,
        native_provisional,
        native_cache_key,
    })
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

/// Where distributions put the interpreters of their own binfmt_misc
/// entries (Debian and Ubuntu's `qemu-user-static` wrappers).
const DISTRO_INTERPRETER_DIRS: &[&str] = &["/usr/libexec/qemu-binfmt/", "/usr/lib/qemu-binfmt/"];
/// Where distributions ship their binfmt.d files.
const DISTRO_BINFMT_D: &[&str] = &["/usr/lib/binfmt.d", "/lib/binfmt.d"];

/// Kernel entries the distribution registered: the interpreter is one of
/// its QEMU wrappers, or a binfmt.d file it ships registers exactly this
/// name with this interpreter (as `systemd-binfmt` does at boot).
///
/// Only asked for the names `takeover = "distro"` could be about: entries
/// qus wants to register that are not what qus registered there itself.
fn distro_entries(
    kernel: &KernelEntries,
    owned: &OwnedEntries,
    wanted: &Wanted,
) -> std::collections::BTreeSet<String> {
    let by_dir = |e: &crate::binfmt::KernelEntry| {
        let path = e.spec.interpreter.to_string_lossy();
        DISTRO_INTERPRETER_DIRS.iter().any(|d| path.starts_with(d))
    };
    let mut distro: std::collections::BTreeSet<String> = kernel
        .iter()
        .filter(|(_, e)| by_dir(e))
        .map(|(name, _)| name.clone())
        .collect();
    let ours_unchanged = |name: &str, e: &crate::binfmt::KernelEntry| {
        owned.get(name).is_some_and(|o| o.spec.equivalent(&e.spec))
    };
    let to_register: std::collections::BTreeSet<&str> = wanted
        .items
        .iter()
        .filter(|w| w.want.is_ok())
        .map(|w| w.name.as_str())
        .collect();
    let in_question = |name: &String, e: &crate::binfmt::KernelEntry| {
        !distro.contains(name) && !ours_unchanged(name, e) && to_register.contains(name.as_str())
    };
    // The binfmt.d files only matter for those: none at all on a cold
    // start or a re-run, where reading them cost more than registering.
    if !kernel.iter().any(|(name, e)| in_question(name, e)) {
        return distro;
    }
    let mut shipped: std::collections::BTreeMap<String, PathBuf> = Default::default();
    let mut seen = Vec::new();
    for dir in DISTRO_BINFMT_D {
        // `/lib` is a link to `/usr/lib` on merged-/usr systems: one read.
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        if seen.contains(&(meta.dev(), meta.ino())) {
            continue;
        }
        seen.push((meta.dev(), meta.ino()));
        let Ok(files) = std::fs::read_dir(dir) else {
            continue;
        };
        for file in files.flatten() {
            let Ok(text) = std::fs::read_to_string(file.path()) else {
                continue;
            };
            for line in text.lines().filter(|l| l.starts_with(':')) {
                if let Ok((name, spec)) = crate::binfmt::entry::parse_register_line(line) {
                    shipped.insert(name, spec.interpreter);
                }
            }
        }
    }
    distro.extend(
        kernel
            .iter()
            .filter(|(name, e)| shipped.get(*name) == Some(&e.spec.interpreter))
            .map(|(name, _)| name.clone()),
    );
    distro
}

/// The running host, or `machine` when given (for tests and for preparing
/// configuration for another host).
pub fn detect_host(machine: Option<&str>) -> Host {
    let machine = machine.map_or_else(arch::kernel_machine, str::to_string);
    Host {
        family: arch::host_family(&machine),
        machine,
    }
}

/// Which binfmt_misc instance a path reaches from here.
pub fn instance(root: &Path) -> Instance {
    crate::userns::instance_at(root)
}

/// Identity of the file a path resolves to (symlinks followed).
pub fn identity_of(path: &Path) -> std::io::Result<Identity> {
    Ok(identity_from(&std::fs::metadata(path)?))
}

fn identity_from(m: &std::fs::Metadata) -> Identity {
    Identity {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    }
}

/// How long a native probe may take: natively it takes well under a
/// millisecond, so this only bounds a host that is badly stuck.
const NATIVE_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Native verdicts on their way: those known, and the probes still
/// running for the rest.
struct Deciding {
    verdicts: NativeVerdicts,
    /// Another tool's entry kept a probe from telling: decided by the
    /// family rule, for now only.
    provisional: bool,
    /// Arches whose verdict waits for a running probe.
    undecided: Vec<&'static str>,
    running: Vec<(&'static Arch, Result<probe::Running, probe::RunResult>)>,
    /// The state-dir cache key to keep the verdicts under, once decided
    /// (only verdicts that took a child or a probe are worth keeping).
    cache_key: Option<String>,
    /// Decided in this pass (not taken from the cache): to be completed
    /// and logged.
    fresh: bool,
}

impl Deciding {
    fn known(verdicts: NativeVerdicts) -> Deciding {
        Deciding {
            verdicts,
            provisional: false,
            undecided: vec![],
            running: vec![],
            cache_key: None,
            fresh: false,
        }
    }

    /// Wait for the probes and decide the rest: the verdicts, whether
    /// they hold for now only, and the cache key to keep them under when
    /// they were decided now and may be kept.
    fn finish(mut self, host: &Host) -> (NativeVerdicts, bool, Option<String>) {
        if !self.fresh {
            return (self.verdicts, self.provisional, None);
        }
        for (a, running) in std::mem::take(&mut self.running) {
            let result = match running {
                Ok(running) => running.finish(NATIVE_PROBE_TIMEOUT),
                Err(ended) => ended,
            };
            let verdict = match result {
                probe::RunResult::Pass => Native::Yes(format!("the {} probe ran natively", a.name)),
                probe::RunResult::ExecFormatError => Native::No(format!(
                    "the host cannot run {} binaries (exec format error)",
                    a.name
                )),
                // Only the kernel's refusal proves the host cannot run it;
                // a crash may be our own sandbox (a seccomp filter of a
                // hardened service), so the family rule decides.
                probe::RunResult::Fail(why) => {
                    tracing::warn!(
                        "the {} probe failed natively ({why}); deciding by the family rule",
                        a.name
                    );
                    family_rule(host, a)
                }
            };
            self.verdicts.insert(a.name.to_string(), verdict);
        }
        for a in arch::ARCHES {
            let Some((_, like)) = NATIVE_SAME_AS.iter().find(|(this, _)| *this == a.name) else {
                continue;
            };
            if !self.undecided.contains(&a.name) {
                continue;
            }
            let verdict = match self.verdicts.get(*like) {
                Some(Native::Yes(_)) => {
                    Native::Yes(format!("loaded like {like}, which runs natively"))
                }
                Some(Native::No(why)) => Native::No(format!("loaded like {like}: {why}")),
                None => family_rule(host, a),
            };
            self.verdicts.insert(a.name.to_string(), verdict);
        }
        for (arch, v) in &self.verdicts {
            match v {
                Native::Yes(why) => tracing::debug!("native {arch}: {why}"),
                Native::No(why) => tracing::info!("{arch} is not native here: {why}"),
            }
        }
        let key = self.cache_key.filter(|_| !self.provisional);
        (self.verdicts, self.provisional, key)
    }
}

/// Native verdicts, cheapest first. Where qus can ask the kernel itself
/// (the usual case: tens of µs) that is cheaper than reading a cache, so
/// nothing is read or kept. Verdicts that take a child or a probe hold for
/// one boot of one kernel, so they are cached in the state dir under the
/// boot id and the host's machine name; except when another tool's entry
/// kept a probe from telling (then the family rule decided, for now only).
fn native_start(
    system: &System,
    kernel: &KernelEntries,
    owned: &OwnedEntries,
    binfmt: BinfmtView,
) -> Deciding {
    use crate::loader_check::Asking;
    if let Some(here) = native_verdicts(&system.host, kernel, owned, binfmt, Asking::HereOnly) {
        return here;
    }
    let boot_id = crate::fsutil::read_generated(Path::new("/proc/sys/kernel/random/boot_id"))
        .unwrap_or_default();
    let key = format!("{} {}", boot_id.trim(), system.host.machine);
    if let Some(cached) = system.state.load_native(&key) {
        return Deciding::known(cached);
    }
    let Some(mut deciding) =
        native_verdicts(&system.host, kernel, owned, binfmt, Asking::HereOrChild)
    else {
        unreachable!("asking in a child always decides or starts a probe")
    };
    deciding.cache_key = Some(key);
    deciding
}

/// What qus knows of the binfmt_misc instance the kernel consults when
/// qus itself execs something.
#[derive(Debug, Clone, Copy)]
struct BinfmtView {
    /// Mounted and enabled: its entries take programs.
    live: bool,
    /// The entries listed are those the kernel consults for this process.
    listed: bool,
}

/// Arches the kernel loads exactly as another one: i486 programs differ
/// from i386 ones only in `e_machine`, which the x86 loader accepts either
/// way, so one probe run answers for both.
const NATIVE_SAME_AS: &[(&str, &str)] = &[("i486", "i386")];

/// Native verdicts for the arches of the host's family (as configured or
/// overridden) and of the running kernel's own family. Other arches are
/// foreign without asking.
///
/// Cheap first: the kernel's own arch is native by definition (no probe),
/// arches loaded alike share one run, and the probes that must run are
/// only started here (each a fork + exec of a tiny program): they run
/// while the caller looks for emulators. With [`Asking::HereOnly`]: `None`
/// as soon as an arch would need a child or a probe.
///
/// [`Asking::HereOnly`]: crate::loader_check::Asking::HereOnly
fn native_verdicts(
    host: &Host,
    kernel: &KernelEntries,
    owned: &OwnedEntries,
    binfmt: BinfmtView,
    asking: crate::loader_check::Asking,
) -> Option<Deciding> {
    let binfmt_live = binfmt.live;
    // Would an entry take a program starting with these bytes? Only
    // answerable from a listing the kernel really consults.
    let takes = |h: &[u8]| {
        binfmt_live
            && kernel
                .values()
                .any(|e| e.enabled && e.spec.matcher.catches(h))
    };
    let entries_take: Option<crate::loader_check::EntriesTake> = binfmt.listed.then_some(&takes);
    let kernel_machine = arch::kernel_machine();
    let real_family = arch::host_family(&kernel_machine);
    let own_arch = arch::find(&kernel_machine).map(|a| a.name);
    let mut deciding = Deciding {
        fresh: true,
        ..Deciding::known(NativeVerdicts::new())
    };
    let relevant = arch::ARCHES
        .iter()
        .filter(|a| a.family == host.family || a.family == real_family);
    for a in relevant {
        let family_rule = family_rule(host, a);
        if Some(a.name) == own_arch && a.family == host.family {
            deciding.verdicts.insert(
                a.name.to_string(),
                Native::Yes(format!("the kernel's own arch ({kernel_machine})")),
            );
            continue;
        }
        if NATIVE_SAME_AS.iter().any(|(this, _)| *this == a.name) {
            deciding.undecided.push(a.name); // from the arch it loads as
            continue;
        }
        let Some(p) = probe::find(a.name) else {
            deciding.verdicts.insert(a.name.to_string(), family_rule);
            continue;
        };
        let catcher = kernel
            .iter()
            .find(|(_, e)| binfmt_live && e.enabled && e.spec.matcher.catches(p.program));
        match catcher {
            Some((name, _)) if owned.contains_key(name) => {
                deciding.verdicts.insert(
                    a.name.to_string(),
                    Native::No(format!(
                        "{name}, registered by qus, runs it: the host could not"
                    )),
                );
            }
            Some(_) => {
                deciding.provisional = true;
                deciding.verdicts.insert(a.name.to_string(), family_rule);
            }
            None => match crate::loader_check::check(p, entries_take, asking)? {
                crate::loader_check::Verdict::Loads => {
                    deciding.verdicts.insert(
                        a.name.to_string(),
                        Native::Yes(format!("the kernel loads {} programs itself", a.name)),
                    );
                }
                crate::loader_check::Verdict::Refuses => {
                    deciding.verdicts.insert(
                        a.name.to_string(),
                        Native::No(format!(
                            "the host cannot run {} binaries (exec format error)",
                            a.name
                        )),
                    );
                }
                crate::loader_check::Verdict::Caught => {
                    deciding.provisional = true;
                    deciding.verdicts.insert(a.name.to_string(), family_rule);
                }
                crate::loader_check::Verdict::Unknown(_)
                    if asking == crate::loader_check::Asking::HereOnly =>
                {
                    return None;
                }
                crate::loader_check::Verdict::Unknown(why) => {
                    tracing::debug!(
                        "cannot ask the kernel about {}: {why}; running its probe",
                        a.name
                    );
                    // Started, not waited for: it runs while the caller
                    // looks for emulators. (Not on a thread: under load,
                    // creating one cost more than the overlap bought.)
                    deciding.undecided.push(a.name);
                    deciding.running.push((a, probe::start(p)));
                }
            },
        }
    }
    Some(deciding)
}

/// The `qemu-binfmt-conf.sh` rule: the host's family is native.
fn family_rule(host: &Host, a: &Arch) -> Native {
    if a.family == host.family {
        Native::Yes(format!(
            "host {} runs {} natively (family rule)",
            host.machine, a.name
        ))
    } else {
        Native::No(format!("not of the {} family", host.family))
    }
}

/// Find the emulator for an arch: the per-arch override, else the first
/// `binary_names` match in `search_path` order that is statically linked,
/// else the first match at all (judged by `want_arch`). Static first: a
/// dynamic `qemu-aarch64` early in the path must not shadow a
/// `qemu-aarch64-static` later in it (Ubuntu's qemu-user-binfmt).
pub fn find_emulator(config: &Config, arch: &Arch) -> Option<PathBuf> {
    find(config, arch).map(|f| f.path)
}

/// An emulator found for an arch, with the look taken while finding it
/// (`None` for a configured path, or a file that could not be read).
struct Found {
    path: PathBuf,
    head: Option<crate::elf::Head>,
}

fn find(config: &Config, arch: &Arch) -> Option<Found> {
    if let Some(path) = config
        .arch
        .get(arch.name)
        .and_then(|o| o.interpreter.as_ref())
    {
        return Some(Found {
            path: path.value.clone(),
            head: None,
        });
    }
    let mut first = None;
    for dir in &config.search_path.value {
        for template in &config.binary_names.value {
            let path = dir.join(template.replace("{arch}", arch.emulator));
            // One open per candidate: a missing one costs just that.
            match crate::elf::read_head(&path) {
                Ok(head) if head.linking == Some(crate::elf::Linking::Static) => {
                    return Some(Found {
                        path,
                        head: Some(head),
                    })
                }
                Ok(head) => {
                    first.get_or_insert(Found {
                        path,
                        head: Some(head),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Unreadable, a loop, …: a candidate if it is there at
                // all, for the checks to refuse with the reason.
                Err(_) if path.exists() => {
                    first.get_or_insert(Found { path, head: None });
                }
                Err(_) => {}
            }
        }
    }
    first
}

/// The flags an arch entry gets on this kernel. Before Linux 5.12 QEMU
/// cannot tell that `P` is set (no `AT_FLAGS` bit) and takes the kept
/// argv[0] for the program's first argument, so every program would see
/// its arguments shifted: qus drops `P` there (and says so once).
pub fn flags_for_kernel(mut flags: Flags, kernel_has_p_bit: bool) -> (Flags, bool) {
    let dropped = flags.preserve_argv0 && !kernel_has_p_bit;
    if dropped {
        flags.preserve_argv0 = false;
    }
    (flags, dropped)
}

/// Does this kernel tell interpreters about `P` (Linux 5.12+)?
fn kernel_has_p_bit() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let (release, ok) = crate::userns::kernel_at_least(5, 12);
        if !ok {
            tracing::warn!(
                "Linux {release} predates 5.12: QEMU cannot see the P flag there and would \
                 shift every program's arguments, so qus registers without P"
            );
        }
        ok
    })
}

/// Refuse a dynamically linked emulator under `F` unless allowed.
fn dynamic_under_f(found: &Found, flags: Flags, allowed: bool) -> Option<String> {
    if !flags.fix_binary || allowed {
        return None;
    }
    let interpreter = &found.path;
    let loader = match &found.head {
        Some(head) => head.loader()?.to_string(),
        None => crate::elf::loader(interpreter)?,
    };
    Some(format!(
        "{} is dynamically linked (needs {loader}): under F it works on the host but fails \
         in every container and chroot (\"No such file or directory\"); install \
         qemu-user-static, or set allow_dynamic = true",
        interpreter.display()
    ))
}

/// Every interpreter path the configuration points at now, by entry name:
/// the emulator found for each arch and each custom entry's interpreter.
/// (What the daemon watches, and what it holds while a file is written.)
pub fn interpreters(config: &Config) -> Vec<(String, PathBuf)> {
    let mut all = Vec::new();
    for a in arch::ARCHES {
        if let Some(path) = find_emulator(config, a) {
            all.push((config.entry_name(a.name), path));
        }
    }
    for (name, e) in &config.entries {
        all.push((name.clone(), e.spec.interpreter.clone()));
    }
    all
}

/// The custom entries' wants, in configuration order.
fn custom_wants(config: &Config, dirs: &safety::DirCache) -> Vec<Want> {
    config
        .entries
        .iter()
        .map(|(name, entry)| {
            let want = if !entry.enabled {
                Err(Skip::Excluded(format!("disabled in {}", entry.source)))
            } else {
                checked(entry.spec.clone(), entry.catch_host_programs, dirs, None)
            };
            Want {
                name: name.clone(),
                arch: None,
                want,
                // A custom entry is named on purpose: never yields.
                others: Others::Override,
            }
        })
        .collect()
}

/// Why an arch is not wanted, before looking for its emulator.
fn arch_skip(
    config: &Config,
    native: &NativeVerdicts,
    overrides: &Overrides,
    arch: &Arch,
) -> Option<Skip> {
    let forced = config.arch.get(arch.name).and_then(|o| o.enabled.as_ref());
    let targeted = match &overrides.targets {
        Some(list) => list.iter().any(|t| t == arch.name || t == "all"),
        None => config.targets_arch(arch.name),
    };
    let excluded = config.exclude.value.iter().any(|e| e == arch.name);
    match forced {
        Some(e) if !e.value => Some(Skip::Excluded(format!("enabled = false ({})", e.source))),
        Some(_) => None,
        None if excluded => Some(Skip::Excluded(format!(
            "in qemu.exclude ({})",
            config.exclude.source
        ))),
        None if !targeted => Some(Skip::Excluded("not in qemu.targets".into())),
        None => match native.get(arch.name) {
            Some(Native::Yes(why)) => Some(Skip::Native(why.clone())),
            _ => None,
        },
    }
}

fn want_arch(
    config: &Config,
    native: &NativeVerdicts,
    overrides: &Overrides,
    arch: &Arch,
    dirs: &safety::DirCache,
) -> Want {
    let want = match arch_skip(config, native, overrides, arch) {
        Some(skip) => Err(skip),
        None => match find(config, arch) {
            None => Err(Skip::NoInterpreter(not_found(config, arch))),
            Some(found) => {
                let over = config.arch.get(arch.name);
                let catch_host = over
                    .and_then(|o| o.catch_host_programs.as_ref())
                    .is_some_and(|c| c.value);
                let flags = overrides
                    .flags
                    .or_else(|| over.and_then(|o| o.flags.as_ref()).map(|f| f.value))
                    .unwrap_or(config.flags.value);
                let (flags, _) = flags_for_kernel(flags, kernel_has_p_bit());
                let allow_dynamic = over
                    .and_then(|o| o.allow_dynamic.as_ref())
                    .map_or(config.allow_dynamic.value, |d| d.value);
                if let Some(why) = dynamic_under_f(&found, flags, allow_dynamic) {
                    return Want {
                        name: config.entry_name(arch.name),
                        arch: Some(arch.name.to_string()),
                        want: Err(Skip::Refused(why)),
                        others: config.others.value,
                    };
                }
                checked(
                    EntrySpec {
                        matcher: Matcher::Magic {
                            offset: 0,
                            magic: arch.magic.to_vec(),
                            mask: Some(arch.mask.to_vec()),
                        },
                        interpreter: found.path,
                        flags,
                    },
                    catch_host,
                    dirs,
                    found.head.as_ref().map(|h| h.bytes.as_slice()),
                )
            }
        },
    };
    let others = config
        .arch
        .get(arch.name)
        .and_then(|o| o.others.as_ref())
        .map_or(config.others.value, |o| o.value);
    Want {
        name: config.entry_name(arch.name),
        arch: Some(arch.name.to_string()),
        want,
        others,
    }
}

/// "no qemu-x-static or qemu-x in /usr/bin:/usr/local/bin"
fn not_found(config: &Config, arch: &Arch) -> String {
    format!(
        "no {} in {}",
        config
            .binary_names
            .value
            .iter()
            .map(|t| t.replace("{arch}", arch.emulator))
            .collect::<Vec<_>>()
            .join(" or "),
        config
            .search_path
            .value
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    )
}

/// Apply the interpreter safety rules and take the file's identity.
/// `catch_host_programs` (config, per arch or entry) lets through an
/// entry that would catch the host's own programs, never one that would
/// catch its own interpreter. `head`: the interpreter's first bytes when
/// finding it read them already.
fn checked(
    spec: EntrySpec,
    catch_host_programs: bool,
    dirs: &safety::DirCache,
    head: Option<&[u8]>,
) -> Result<Desired, Skip> {
    let (resolved, meta) = match safety::check_interpreter(&spec.interpreter, dirs) {
        Ok(found) => found,
        // Judged missing only when the checks fail: one look, not two.
        Err(_) if !spec.interpreter.exists() => {
            return Err(Skip::NoInterpreter(format!(
                "{} does not exist",
                spec.interpreter.display()
            )))
        }
        Err(r) => return Err(Skip::Refused(r.0)),
    };
    if let Some(why) = breaks_host(&spec.matcher, &resolved, head, catch_host_programs) {
        return Err(Skip::Refused(why));
    }
    Ok(Desired {
        spec,
        identity: identity_from(&meta),
    })
}

/// Would this entry break the host? One that catches its own interpreter
/// makes every run recurse until the kernel gives up ("Too many levels of
/// symbolic links"); one that catches the host's own programs (this very
/// binary stands for them) sends every native program, `qus unregister`
/// included, to the emulator.
fn breaks_host(
    matcher: &Matcher,
    interpreter: &Path,
    head: Option<&[u8]>,
    catch_host_programs: bool,
) -> Option<String> {
    // The same look as finding an emulator takes (binfmt_misc matches
    // within the first 256 bytes; the look holds more).
    let header = |path: &Path| crate::elf::read_head(path).ok().map(|h| h.bytes);
    let caught = match head {
        Some(h) => matcher.catches(h),
        None => header(interpreter).is_some_and(|h| matcher.catches(&h)),
    };
    if caught {
        return Some(format!(
            "it would catch its own interpreter {} (every run would loop)",
            interpreter.display()
        ));
    }
    // Our own executable stands for the host's programs; read it once.
    static OWN: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
    let own = OWN.get_or_init(|| header(Path::new("/proc/self/exe")));
    if !catch_host_programs && own.as_ref().is_some_and(|h| matcher.catches(h)) {
        return Some(
            "it would catch the host's own programs (qus itself is one): \
             nothing native would run any more (set catch_host_programs = true \
             for this entry if that is really meant)"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_is_dropped_only_before_5_12() {
        let pf = Flags::parse("PF").expect("flags");
        let (old, dropped) = flags_for_kernel(pf, false);
        assert!(dropped && !old.preserve_argv0 && old.fix_binary);
        let (new, dropped) = flags_for_kernel(pf, true);
        assert!(!dropped && new == pf);
        let f = Flags::parse("F").expect("flags");
        assert_eq!(flags_for_kernel(f, false), (f, false));
    }
}
