//! Model-based soak test: the real qusd on a private binfmt_misc instance
//! under a long, seeded, reproducible sequence of what happens to real
//! machines — emulators added, removed, replaced (rename and in place),
//! symlinked; drop-ins added, changed, broken, fixed, masked; entries
//! removed and disabled by hand; `-1`/`0` written to `status`; foreign
//! entries added; SIGHUP; SIGKILL + restart.
//!
//! After each quiet period the kernel must hold exactly what a fresh
//! `qus register` computes for the same files in a second, empty instance
//! (the model), plus the foreign entries still alive, untouched; every
//! owned F entry must have been registered from the emulator file that is
//! there now; the number of binfmt_misc writes must stay within one per
//! real change; and a further quiet period must bring no pass that writes.
//!
//!   QUS_SOAK_STEPS=5000 QUS_SOAK_SEED=random cargo test --test soak -- --nocapture
//!
//! CI runs 300 steps with a fixed seed (reproducible); `QUS_SOAK_SEED=N`
//! replays a seed, `random` takes one from the clock (printed); a failure
//! prints the seed and the shortest failing prefix of steps it finds.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use common::{require_qemu, NotifySocket, Qusd, Sandbox};

const ARCHES: &[&str] = &["aarch64", "arm", "riscv64", "s390x", "ppc64le", "mips"];
const DEBOUNCE_MS: u64 = 40;
const DEFAULT_SEED: u64 = 20261126;

/// xorshift64*: tiny, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Debug, Clone)]
enum Step {
    AddEmulator(usize),
    RemoveEmulator(usize),
    ReplaceByRename(usize),
    ReplaceInPlace(usize),
    Symlink(usize),
    DropIn(Vec<usize>),
    RemoveDropIn,
    BreakDropIn,
    FixDropIn,
    ToggleMask,
    RemoveEntry(usize),
    DisableEntry(usize),
    StatusRemoveAll,
    StatusDisable,
    ForeignEntry(u32),
    Hup,
    KillRestart,
    Check,
}

fn random_step(r: &mut Rng) -> Step {
    let a = r.below(ARCHES.len());
    match r.below(40) {
        0..=5 => Step::AddEmulator(a),
        6..=8 => Step::RemoveEmulator(a),
        9..=10 => Step::ReplaceByRename(a),
        11 => Step::ReplaceInPlace(a),
        12 => Step::Symlink(a),
        13..=15 => Step::DropIn((0..ARCHES.len()).filter(|_| r.below(4) == 0).collect()),
        16 => Step::RemoveDropIn,
        17 => Step::BreakDropIn,
        18 => Step::FixDropIn,
        19 => Step::ToggleMask,
        20..=21 => Step::RemoveEntry(a),
        22..=23 => Step::DisableEntry(a),
        24 => Step::StatusRemoveAll,
        25 => Step::StatusDisable,
        26..=27 => Step::ForeignEntry(r.below(1000) as u32),
        28 => Step::Hup,
        29 => Step::KillRestart,
        _ => Step::Check,
    }
}

/// Upper bound on binfmt_misc writes one step may cause.
fn write_budget(step: &Step, owned_now: usize) -> usize {
    match step {
        // Renamed over an existing copy, an "add" is an upgrade: replace.
        Step::AddEmulator(_) => 2,
        Step::RemoveEmulator(_) => 1,
        Step::ReplaceByRename(_) | Step::ReplaceInPlace(_) | Step::Symlink(_) => 2,
        Step::DropIn(_) | Step::RemoveDropIn | Step::FixDropIn | Step::ToggleMask => {
            2 * ARCHES.len()
        }
        Step::RemoveEntry(_) | Step::DisableEntry(_) => 1,
        Step::StatusRemoveAll => owned_now + 1,
        Step::StatusDisable => 1,
        Step::KillRestart => 2 * ARCHES.len(),
        Step::BreakDropIn | Step::ForeignEntry(_) | Step::Hup | Step::Check => 0,
    }
}

struct World {
    sb: Sandbox,
    vendor: PathBuf,
    pool: PathBuf,
    notify: NotifySocket,
    qusd: Option<Qusd>,
    /// Foreign entries alive: name → kernel text when added.
    foreign: BTreeMap<String, String>,
    broken: bool,
    masked: bool,
    writes_seen: usize,
    budget: usize,
    logs: Vec<String>,
}

impl World {
    fn new() -> World {
        let sb = Sandbox::new();
        let vendor = sb.path().join("vendor");
        let pool = sb.path().join("pool");
        fs::create_dir(&vendor).expect("mkdir");
        fs::create_dir(&pool).expect("mkdir");
        for a in ARCHES {
            let dst = pool.join(format!("qemu-{a}-static"));
            if fs::hard_link(require_qemu(a), &dst).is_err() {
                fs::copy(require_qemu(a), &dst).expect("copy");
            }
        }
        // The vendor file (maskable) only excludes mips; the search path
        // and debounce live in a file the steps never touch.
        fs::write(
            vendor.join("40-vendor.toml"),
            "[qemu]\nexclude = [\"mips\"]\n",
        )
        .expect("vendor");
        sb.write_config(
            "10-base.toml",
            &format!(
                "[qemu]\nsearch_path = [\"{}\"]\n[daemon]\ndebounce_ms = {DEBOUNCE_MS}\n",
                sb.bin().display()
            ),
        );
        let notify = NotifySocket::new(sb.path());
        let mut w = World {
            sb,
            vendor,
            pool,
            notify,
            qusd: None,
            foreign: BTreeMap::new(),
            broken: false,
            masked: false,
            writes_seen: 0,
            budget: 0,
            logs: vec![],
        };
        w.start();
        w.writes_seen = w.writes();
        w
    }

    fn config_args(&self) -> Vec<String> {
        vec![
            "--config-dir".into(),
            self.vendor.display().to_string(),
            "--config-dir".into(),
            self.sb.etc().display().to_string(),
        ]
    }

    fn start(&mut self) {
        self.notify.skip_pending();
        let mut c = self.sb.command(common::QUSD);
        c.arg("--binfmt-misc")
            .arg(self.sb.binfmt())
            .arg("--state-dir")
            .arg(self.sb.state())
            .args(self.config_args())
            .args(["--host-arch", "x86_64", "--log-level", "trace"])
            .env("NOTIFY_SOCKET", &self.notify.path)
            .env_remove("WATCHDOG_USEC");
        let log = self
            .sb
            .path()
            .join(format!("soak-qusd-{}.log", self.logs.len()));
        c.stderr(fs::File::create(&log).expect("log"));
        let child = c.spawn().expect("qusd");
        self.logs.push(log.display().to_string());
        self.qusd = Some(Qusd { child, log });
        self.notify.wait(30, "READY=1", |m| m.contains("READY=1"));
    }

    fn qusd(&self) -> &Qusd {
        self.qusd.as_ref().expect("qusd running")
    }

    /// Sum of "N writes to binfmt_misc" over every pass of every qusd so far.
    fn writes(&self) -> usize {
        self.logs
            .iter()
            .map(|l| fs::read_to_string(l).unwrap_or_default())
            .flat_map(|t| {
                t.lines()
                    .filter(|l| l.contains(" INFO pass "))
                    .filter_map(|l| {
                        l.split("): ")
                            .nth(1)?
                            .split_whitespace()
                            .next()?
                            .parse::<usize>()
                            .ok()
                    })
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    fn emu(&self, a: usize) -> PathBuf {
        self.sb.bin().join(format!("qemu-{}-static", ARCHES[a]))
    }

    fn entry_name(a: usize) -> String {
        format!("qemu-{}", ARCHES[a])
    }

    fn apply(&mut self, step: &Step) {
        // While a drop-in is broken qusd keeps its last good configuration;
        // further configuration changes would make the model guess which
        // one that is, and a restart would (rightly) refuse to start.
        let config_change = matches!(
            step,
            Step::DropIn(_)
                | Step::RemoveDropIn
                | Step::ToggleMask
                | Step::KillRestart
                | Step::BreakDropIn
        );
        if self.broken && config_change {
            return;
        }
        let owned_now = self
            .sb
            .entries()
            .iter()
            .filter(|e| e.starts_with("qemu-"))
            .count();
        self.budget += write_budget(step, owned_now);
        let bm = self.sb.binfmt();
        match step {
            Step::AddEmulator(a) => {
                let tmp = self.sb.bin().join(".incoming");
                let _ = fs::remove_file(&tmp);
                fs::hard_link(self.pool.join(format!("qemu-{}-static", ARCHES[*a])), &tmp)
                    .or_else(|_| {
                        fs::copy(self.pool.join(format!("qemu-{}-static", ARCHES[*a])), &tmp)
                            .map(|_| ())
                    })
                    .expect("stage");
                fs::rename(&tmp, self.emu(*a)).expect("rename in");
            }
            Step::RemoveEmulator(a) => {
                let _ = fs::remove_file(self.emu(*a));
            }
            Step::ReplaceByRename(a) => {
                let tmp = self.sb.bin().join(".upgrade");
                fs::copy(self.pool.join(format!("qemu-{}-static", ARCHES[*a])), &tmp)
                    .expect("copy");
                fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod");
                fs::rename(&tmp, self.emu(*a)).expect("rename over");
            }
            Step::ReplaceInPlace(a) => {
                // In place is refused (ETXTBSY) while an F entry holds the
                // file, so do what `install` does: unlink, then write anew.
                let _ = fs::remove_file(self.emu(*a));
                fs::copy(
                    self.pool.join(format!("qemu-{}-static", ARCHES[*a])),
                    self.emu(*a),
                )
                .expect("copy");
                fs::set_permissions(self.emu(*a), fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
            Step::Symlink(a) => {
                let tmp = self.sb.bin().join(".link");
                let _ = fs::remove_file(&tmp);
                std::os::unix::fs::symlink(
                    self.pool.join(format!("qemu-{}-static", ARCHES[*a])),
                    &tmp,
                )
                .expect("symlink");
                fs::rename(&tmp, self.emu(*a)).expect("rename link");
            }
            Step::DropIn(ex) => {
                let list: Vec<String> = ex.iter().map(|i| format!("\"{}\"", ARCHES[*i])).collect();
                let path = self.sb.etc().join("50-soak.toml");
                let tmp = self.sb.etc().join(".50-soak.toml.tmp");
                fs::write(&tmp, format!("[qemu]\nexclude = [{}]\n", list.join(", ")))
                    .expect("write");
                fs::rename(&tmp, path).expect("rename");
            }
            Step::RemoveDropIn => {
                let _ = fs::remove_file(self.sb.etc().join("50-soak.toml"));
            }
            Step::BreakDropIn => {
                // Let pending changes settle first: a change that is valid
                // for a few milliseconds and then broken together with a
                // bad file is, rightly, never applied; the model would
                // expect it.
                self.qusd().settle(&self.sb);
                self.sb
                    .write_config("60-broken.toml", "[qemu]\nflags = \"PQ\"\n");
                self.broken = true;
            }
            Step::FixDropIn => {
                let _ = fs::remove_file(self.sb.etc().join("60-broken.toml"));
                self.broken = false;
            }
            Step::ToggleMask => {
                let link = self.sb.etc().join("40-vendor.toml");
                if self.masked {
                    let _ = fs::remove_file(&link);
                } else {
                    std::os::unix::fs::symlink("/dev/null", &link).expect("mask");
                }
                self.masked = !self.masked;
            }
            Step::RemoveEntry(a) => {
                // It may vanish in between (qusd acting on an earlier step).
                self.sb
                    .try_write_inside(&bm.join(Self::entry_name(*a)), "-1");
            }
            Step::DisableEntry(a) => {
                self.sb
                    .try_write_inside(&bm.join(Self::entry_name(*a)), "0");
            }
            Step::StatusRemoveAll => {
                self.sb.write_inside(&bm.join("status"), "-1");
                self.foreign.clear();
            }
            Step::StatusDisable => self.sb.write_inside(&bm.join("status"), "0"),
            Step::ForeignEntry(n) => {
                let name = format!("foreign-{n}");
                if !self.sb.has_entry(&name) {
                    self.sb.register_raw(&format!(":{name}:E::f{n}::/bin/sh:"));
                    let text = self.sb.entry(&name).expect("foreign entry");
                    self.foreign.insert(name, text);
                }
            }
            Step::Hup => self.qusd().signal("HUP"),
            Step::KillRestart => {
                let mut d = self.qusd.take().expect("qusd");
                d.signal("KILL");
                d.wait_exit(10);
                drop(d); // its log stays on disk for the write count
                self.start();
            }
            Step::Check => {}
        }
    }

    /// Wait for quiet, then compare with the model. Err describes the gap.
    fn check(&mut self) -> Result<(), String> {
        self.qusd().settle(&self.sb);
        // The model: a fresh `qus register` into a fresh, empty instance,
        // same files and config. (With a broken drop-in the model is the
        // configuration without it: qusd keeps the previous one, which is
        // the last good one.)
        let model = Sandbox::new();
        let hidden = self.sb.etc().join("60-broken.toml");
        let stash = self.sb.path().join("broken.stash");
        if self.broken {
            fs::rename(&hidden, &stash).map_err(|e| e.to_string())?;
        }
        let out = model
            .command(common::QUS)
            .arg("--binfmt-misc")
            .arg(model.binfmt())
            .arg("--state-dir")
            .arg(model.state())
            .args(self.config_args())
            .args(["--host-arch", "x86_64", "--log-level", "warn", "register"])
            .output()
            .map_err(|e| e.to_string())?;
        if self.broken {
            fs::rename(&stash, &hidden).map_err(|e| e.to_string())?;
        }
        if !out.status.success() {
            return Err(format!(
                "model qus register failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let real: BTreeMap<String, String> = self
            .sb
            .entries()
            .into_iter()
            .map(|n| (n.clone(), self.sb.entry(&n).unwrap_or_default()))
            .collect();
        let mut want: BTreeMap<String, String> = model
            .entries()
            .into_iter()
            .map(|n| (n.clone(), model.entry(&n).unwrap_or_default()))
            .collect();
        want.extend(self.foreign.clone());
        if real != want {
            let diff: Vec<String> = real
                .keys()
                .chain(want.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|k| real.get(*k) != want.get(*k))
                .map(|k| format!("{k}: kernel {:?} / model {:?}", real.get(k), want.get(k)))
                .collect();
            return Err(format!(
                "kernel differs from the model:\n  {}",
                diff.join("\n  ")
            ));
        }
        if fs::read_to_string(self.sb.binfmt_outside().join("status"))
            .map_err(|e| e.to_string())?
            .trim()
            != "enabled"
        {
            return Err("binfmt_misc left disabled".into());
        }
        // Owned F entries were registered from the file that is there now;
        // every record must name a pool arch whose emulator still exists
        // (the planner forgets the others).
        let records = fs::read_to_string(self.sb.state().join("owned.json"));
        let has_qemu = real.keys().any(|k| k.starts_with("qemu-"));
        let state: serde_json::Value = match records {
            Ok(text) => serde_json::from_str(&text).map_err(|e| e.to_string())?,
            Err(e) if has_qemu => {
                return Err(format!("no ownership records with entries registered: {e}"))
            }
            Err(_) => serde_json::json!({}),
        };
        if let Some(entries) = state["entries"].as_object() {
            for (name, rec) in entries {
                let a = ARCHES
                    .iter()
                    .position(|a| format!("qemu-{a}") == *name)
                    .ok_or_else(|| format!("record for {name}, which qus never registered here"))?;
                let m = fs::metadata(self.emu(a))
                    .map_err(|e| format!("{name}: recorded, but its emulator is gone: {e}"))?;
                let ino = rec["identity"]["ino"].as_u64().unwrap_or(0);
                if ino != m.ino() {
                    return Err(format!(
                        "{name}: registered from inode {ino}, the emulator is now inode {}",
                        m.ino()
                    ));
                }
            }
        }
        // Writes within budget, and no pass that writes once quiet.
        let writes = self.writes();
        if writes - self.writes_seen > self.budget {
            return Err(format!(
                "{} binfmt_misc writes for changes allowing {}",
                writes - self.writes_seen,
                self.budget
            ));
        }
        // A loop of passes would never let qusd go quiet (settle fails);
        // a single stray pass would show as more writes.
        self.qusd().settle(&self.sb);
        let after = self.writes();
        if after != writes {
            return Err(format!(
                "{} writes while nothing changed (a loop?)",
                after - writes
            ));
        }
        self.writes_seen = after;
        self.budget = 0;
        let _ = self.qusd();
        Ok(())
    }
}

fn run(steps: &[Step]) -> Result<(), (usize, String)> {
    let mut w = World::new();
    let mut since_check = vec![];
    for (i, step) in steps.iter().enumerate() {
        w.apply(step);
        since_check.push(format!("{step:?}"));
        if matches!(step, Step::Check) || i + 1 == steps.len() {
            w.check().map_err(|e| {
                let log = w.qusd().log_text();
                let mut tail: Vec<&str> = log.lines().rev().take(30).collect();
                tail.reverse();
                (
                    i,
                    format!(
                        "{e}\n  steps since the last check: {}\n  qusd log (tail):\n    {}",
                        since_check.join(", "),
                        tail.join("\n    ")
                    ),
                )
            })?;
            since_check.clear();
        }
    }
    Ok(())
}

#[test]
fn soak_against_the_model() {
    let n: usize = std::env::var("QUS_SOAK_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    // A fixed seed by default, so CI is reproducible; `random` explores.
    let seed: u64 = match std::env::var("QUS_SOAK_SEED").ok().as_deref() {
        Some("random") => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        }
        Some(s) => s.parse().unwrap_or(DEFAULT_SEED),
        None => DEFAULT_SEED,
    };
    let mut r = Rng(seed);
    let steps: Vec<Step> = (0..n).map(|_| random_step(&mut r)).collect();
    eprintln!(
        "soak: seed {seed}, {n} steps, {} checks",
        steps.iter().filter(|s| matches!(s, Step::Check)).count() + 1
    );
    let Err((at, why)) = run(&steps) else {
        eprintln!("soak: {n} steps, kernel matched the model at every check");
        return;
    };
    eprintln!("soak: failed at step {at}: {why}\nshrinking…");
    // Shrink: the shortest failing prefix, then drop steps one by one
    // (bounded: each try replays a whole run).
    let mut failing: Vec<Step> = steps[..=at].to_vec();
    let (mut lo, mut hi) = (1, failing.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if run(&failing[..mid]).is_err() {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    failing.truncate(hi);
    let mut i = 0;
    let mut tries = 0;
    while i < failing.len() && failing.len() > 1 && tries < 40 {
        tries += 1;
        let mut shorter = failing.clone();
        shorter.remove(i);
        if run(&shorter).is_err() {
            failing = shorter;
        } else {
            i += 1;
        }
    }
    panic!(
        "soak failed (QUS_SOAK_SEED={seed} QUS_SOAK_STEPS={n}) at step {at}: {why}\n\
         shortest failing sequence ({} steps):\n{failing:#?}",
        failing.len()
    );
}
