//! The performance suite: qus side by side with systemd-binfmt,
//! update-binfmts, qemu-binfmt-conf.sh and a minimal C registrar (the
//! floor: `bench/registrar.c`), each in its own private binfmt_misc
//! instance (user + mount namespace, Linux >= 6.7), on the same work,
//! interleaved (each round starts with the next tool, so drift cancels),
//! on a quiet machine and with a CPU hog on every core. Prints one
//! markdown report.
//!
//!     cargo bench --bench suite                  # full run (~4 min)
//!     QUS_BENCH_QUICK=1 cargo bench --bench suite    # CI: checks it runs
//!     QUS_BENCH_ONLY=apply cargo bench --bench suite # the cold-apply tables only
//!     QUS_BENCH_ONLY=memory cargo bench --bench suite # peak RSS figures only
//!
//! It measures what ships: it runs `make build` first (static binaries in
//! `target/dist`) and points every run at them (`QUS_BIN_DIR`), unless
//! `QUS_BIN_DIR` names other binaries already.
//!
//! Needs: qemu-user-static, binfmt-support, strace, time, a C compiler
//! with a static libc (gcc, libc6-dev), systemd (for
//! /lib/systemd/systemd-binfmt); qemu-binfmt-conf.sh is fetched from
//! Debian's qemu source package into /var/cache/qus-bench (never committed).
//! Whole-process measurements, so a plain harness rather than criterion.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    qus_bin, qusd_bin, require_qemu, require_tool, wait_for, NotifySocket, Sandbox, WriteWatch,
};

struct Settings {
    quick: bool,
    apply_trials: usize,
    latency_trials: usize,
    idle_secs: u64,
    scale: Vec<usize>,
    burst: usize,
}

/// Median, min, max of samples in ms.
#[derive(Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
    p99: f64,
}

fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[(((v.len() - 1) as f64) * p).round() as usize];
    Stat {
        median: at(0.5),
        min: v[0],
        max: v[v.len() - 1],
        p99: at(0.99),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Tool {
    Qus,
    /// `bench/registrar.c`: open `register` once, write qus's lines.
    CRegistrar,
    SystemdBinfmt,
    UpdateBinfmts,
    QemuBinfmtConf,
    /// The namespace and nsenter cost alone, subtracted from the others.
    Nothing,
    /// Start-up floors (no registration): the C registrar with nothing to
    /// write, an empty Rust program built like qus, and `qus --version`.
    CStart,
    RustStart,
    QusStart,
    /// `bench/checks_floor.c`: the system calls of qus's checks, no logic.
    ChecksFloor,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Qus => "qus register",
            Tool::CRegistrar => "minimal C registrar",
            Tool::SystemdBinfmt => "systemd-binfmt",
            Tool::UpdateBinfmts => "update-binfmts",
            Tool::QemuBinfmtConf => "qemu-binfmt-conf.sh",
            Tool::Nothing => "(namespace + nsenter only)",
            Tool::CStart => "minimal C registrar, nothing to write",
            Tool::RustStart => "empty Rust program (static PIE, like qus)",
            Tool::QusStart => "`qus --version`",
            Tool::ChecksFloor => "C program making the system calls of qus's checks, no logic",
        }
    }
}

/// Everything the peers need, found or fetched once.
struct Peers {
    binfmt_d: Vec<PathBuf>,
    binfmts: Vec<String>,
    conf_sh: PathBuf,
    /// The minimal C registrar, built from bench/registrar.c.
    registrar: PathBuf,
    /// bench/checks_floor.c: qus's checks' system calls, nothing else.
    checks_floor: PathBuf,
    /// bench/empty.rs, built with qus's static flags.
    rust_empty: PathBuf,
}

/// Build a C floor, `bench/NAME.c` (`cc -O2 -static`), once per run.
fn build_c(name: &str) -> PathBuf {
    require_tool("cc", "gcc (and libc6-dev for the static libc)");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("bench/{name}.c"));
    let st = Command::new("cc")
        .args(["-O2", "-static", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(
        st.success(),
        "cannot build {}: apt-get install gcc libc6-dev",
        src.display()
    );
    out
}

/// Build bench/empty.rs the way `make` builds qus: static glibc, PIE,
/// optimised and stripped, for the host's triple.
fn build_rust_empty() -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("empty-rust");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/empty.rs");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let host = Command::new(&rustc).arg("-vV").output().expect("rustc -vV");
    let host = String::from_utf8_lossy(&host.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("host triple from rustc -vV");
    let st = Command::new(&rustc)
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "strip=symbols",
            "-C",
            "target-feature=+crt-static",
        ])
        .args(["--target", &host, "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("rustc");
    assert!(
        st.success(),
        "cannot build {}: needs glibc's static libc (apt-get install libc6-dev)",
        src.display()
    );
    out
}

fn fetch_qemu_binfmt_conf() -> PathBuf {
    let cache = Path::new("/var/cache/qus-bench");
    let script = cache.join("qemu-binfmt-conf.sh");
    if script.is_file() {
        return script;
    }
    fs::create_dir_all(cache.join("apt/lists/partial")).expect("cache dir");
    fs::write(
        cache.join("src.list"),
        "deb-src http://deb.debian.org/debian bookworm main\n",
    )
    .expect("src.list");
    let apt = |args: &[&str]| {
        let st = Command::new("apt-get")
            .current_dir(cache)
            .args([
                "-qq",
                "-o",
                "Dir::Etc::SourceList=/var/cache/qus-bench/src.list",
                "-o",
                "Dir::Etc::SourceParts=/dev/null",
                "-o",
                "Dir::State::Lists=/var/cache/qus-bench/apt/lists",
            ])
            .args(args)
            .status()
            .expect("apt-get");
        assert!(st.success(), "apt-get {args:?} failed");
    };
    apt(&["update"]);
    apt(&["source", "--download-only", "qemu"]);
    let orig = fs::read_dir(cache)
        .expect("cache")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".orig.tar.xz"))
        .expect("qemu orig tarball");
    let st = Command::new("tar")
        .current_dir(cache)
        .arg("-xJf")
        .arg(&orig)
        .args([
            "--wildcards",
            "*/scripts/qemu-binfmt-conf.sh",
            "--strip-components=2",
        ])
        .status()
        .expect("tar");
    assert!(
        st.success() && script.is_file(),
        "qemu-binfmt-conf.sh not in {}",
        orig.display()
    );
    script
}

fn peers() -> Peers {
    require_qemu("aarch64");
    require_tool("update-binfmts", "binfmt-support");
    require_tool("strace", "strace");
    assert!(
        Path::new("/lib/systemd/systemd-binfmt").is_file(),
        "needs /lib/systemd/systemd-binfmt: apt-get install -y systemd"
    );
    let mut binfmt_d: Vec<PathBuf> = fs::read_dir("/usr/lib/binfmt.d")
        .expect("/usr/lib/binfmt.d")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("qemu-"))
        })
        .collect();
    binfmt_d.sort();
    let mut binfmts: Vec<String> = fs::read_dir("/usr/share/binfmts")
        .expect("/usr/share/binfmts")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("qemu-"))
        .collect();
    binfmts.sort();
    Peers {
        binfmt_d,
        binfmts,
        conf_sh: fetch_qemu_binfmt_conf(),
        registrar: build_c("registrar"),
        checks_floor: build_c("checks_floor"),
        rust_empty: build_rust_empty(),
    }
}

/// The command that makes `tool` register every emulator, inside `sb`.
fn apply_command(tool: Tool, sb: &Sandbox, p: &Peers) -> Command {
    match tool {
        Tool::Qus => {
            let mut c = sb.command(qus_bin());
            c.arg("--state-dir")
                .arg(run_state_dir(sb))
                .arg("--config-dir")
                .arg(sb.etc());
            c.arg("--log-level").arg("warn").arg("register");
            c
        }
        Tool::CRegistrar => {
            // The lines qus would write, exported beforehand (untimed).
            let lines = sb.path().join("lines");
            if !lines.exists() {
                let out = sb
                    .command(qus_bin())
                    .arg("--state-dir")
                    .arg(sb.path().join("export-state"))
                    .arg("--config-dir")
                    .arg(sb.etc())
                    .args(["--log-level", "error", "export", "--format", "binfmt.d"])
                    .output()
                    .expect("qus export");
                fs::write(&lines, &out.stdout).expect("lines");
            }
            let mut c = sb.command(&p.registrar);
            c.arg(sb.binfmt().join("register")).arg(&lines);
            c
        }
        Tool::SystemdBinfmt => {
            let mut c = sb.command("/lib/systemd/systemd-binfmt");
            c.args(&p.binfmt_d);
            c
        }
        Tool::UpdateBinfmts => {
            // Import (which enables) every qemu format Debian ships.
            let mut c = sb.command("sh");
            c.arg("-c").arg(format!(
                "for f in {}; do update-binfmts --importdir /usr/share/binfmts --import $f || exit 1; done",
                p.binfmts.join(" ")
            ));
            c
        }
        Tool::QemuBinfmtConf => {
            let mut c = sb.command("sh");
            c.arg(&p.conf_sh).args([
                "--qemu-path",
                "/usr/bin",
                "--qemu-suffix",
                "-static",
                "--persistent",
                "yes",
                "--preserve-argv0",
                "yes",
            ]);
            c
        }
        Tool::Nothing => sb.command("true"),
        Tool::CStart => {
            let none = sb.path().join("no-lines");
            fs::write(&none, "").expect("no-lines");
            let mut c = sb.command(&p.registrar);
            c.arg(sb.binfmt().join("register")).arg(none);
            c
        }
        Tool::RustStart => sb.command(&p.rust_empty),
        Tool::ChecksFloor => {
            // The same lines as the C registrar, exported (untimed) first.
            let _ = apply_command(Tool::CRegistrar, sb, p);
            // On the sandbox's tmpfs, like qus's state dir (the program
            // makes the directory, inside the namespace, as qus does).
            let state = sb.path().join("run/floor");
            let mut c = sb.command(&p.checks_floor);
            c.arg(sb.binfmt().join("register"))
                .arg(sb.path().join("lines"))
                .arg(state);
            c
        }
        Tool::QusStart => {
            let mut c = sb.command(qus_bin());
            c.arg("--version");
            c
        }
    }
}

fn run_quiet(c: Command) -> Duration {
    let (d, ok, text) = run_status(c);
    assert!(ok, "failed: {text}");
    d
}

/// Run, time, and say whether it succeeded (with its output).
fn run_status(mut c: Command) -> (Duration, bool, String) {
    let t0 = Instant::now();
    let out = c.output().expect("run tool");
    let d = t0.elapsed();
    let text = format!(
        "{:?}: {}{}",
        c,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (d, out.status.success(), text)
}

/// Writes to binfmt_misc files made by a command, from strace.
fn count_writes(tool: Tool, sb: &Sandbox, p: &Peers) -> BTreeMap<&'static str, usize> {
    let trace = sb.path().join(format!("strace-{tool:?}"));
    let c = apply_command(tool, sb, p);
    // `c` is `nsenter … -- PROGRAM ARGS`: trace PROGRAM ARGS inside.
    let inner: Vec<_> = c.get_args().skip_while(|a| *a != "--").skip(1).collect();
    let mut s = sb.command("strace");
    s.args([
        "-f",
        "-qq",
        "-yy",
        "-e",
        "trace=write",
        "-e",
        "signal=none",
        "-o",
    ])
    .arg(&trace)
    .args(inner);
    let _ = run_status(s);
    let text = fs::read_to_string(&trace).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.contains("</proc/sys/fs/binfmt_misc/"))
    {
        let refused = line.contains("= -1 E");
        let kind = if line.contains("/binfmt_misc/register>") {
            if refused {
                "register (refused: EEXIST)"
            } else {
                "register"
            }
        } else if line.contains("\"-1") {
            "remove"
        } else {
            "enable/disable"
        };
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}

fn entries(sb: &Sandbox) -> usize {
    sb.entries().len()
}

fn host_info() -> String {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let qemu = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "qemu-user-static"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    format!(
        "Linux {}, {} CPUs ({cpu}), qemu-user-static {qemu}",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

/// A busy loop on every core, for the "loaded" rows (as at boot, when
/// everything starts at once). Killed on drop.
struct CpuHog(Vec<std::process::Child>);

impl CpuHog {
    fn start() -> CpuHog {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        CpuHog(
            (0..n)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "exec sh -c 'while :; do :; done'"])
                        .spawn()
                        .expect("spawn CPU hog")
                })
                .collect(),
        )
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where qus keeps its records in the benchmark: under the sandbox's own
/// `run`, a tmpfs as `/run` is on a booted system (see [`bench_sandbox`]).
fn run_state_dir(sb: &Sandbox) -> PathBuf {
    sb.path().join("run/qusd")
}

/// A fresh instance at the system path, with a tmpfs of its own for the
/// state dir (`/run` is a tmpfs after every boot; it is not everywhere
/// the benchmark runs, and an fsync on a disk would measure the disk). The
/// tmpfs lives in the sandbox's mount namespace and goes with it.
fn bench_sandbox() -> Sandbox {
    let sb = Sandbox::system_path();
    let run = sb.path().join("run");
    fs::create_dir(&run).expect("mkdir run");
    let st = sb
        .command("mount")
        .args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs"])
        .arg(&run)
        .status()
        .expect("mount");
    assert!(st.success(), "cannot mount a tmpfs in the sandbox");
    sb
}

/// Build what ships (`make build`: static binaries in `target/dist`) and
/// point every run at it, unless `QUS_BIN_DIR` already names binaries.
fn use_shipped_binaries() {
    if std::env::var_os("QUS_BIN_DIR").is_some() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    require_tool("make", "make");
    let st = Command::new("make")
        .arg("-s")
        .arg("build")
        .current_dir(root)
        .status()
        .expect("make build");
    assert!(st.success(), "make build failed");
    // Set before any thread or child exists.
    std::env::set_var("QUS_BIN_DIR", root.join("target/dist"));
}

fn main() {
    use_shipped_binaries();
    let quick = std::env::var_os("QUS_BENCH_QUICK").is_some();
    let only = std::env::var("QUS_BENCH_ONLY").unwrap_or_default();
    if only == "memory" {
        println!(
            "`qus register` (32 entries, cold): peak RSS {} KiB. qusd peak RSS over a \
             1000-entry pass: {} KiB.",
            qus_register_peak_rss(),
            qusd_peak_rss_1000()
        );
        return;
    }
    let only_apply = only == "apply";
    let s = if quick {
        Settings {
            quick,
            apply_trials: 3,
            latency_trials: 5,
            idle_secs: 2,
            scale: vec![1, 100],
            burst: 100,
        }
    } else {
        Settings {
            quick,
            apply_trials: 30,
            latency_trials: 60,
            idle_secs: 60,
            scale: vec![1, 100, 1000],
            burst: 1000,
        }
    };
    let p = peers();
    let mut out = String::new();
    out.push_str(&format!(
        "# qus performance suite{}\n\n{}. Each tool runs in its own private binfmt_misc \
         instance (user + mount namespace), interleaved (each round starts with the next \
         tool), {} trials per tool and mode. Times in ms: median (p99), namespace + nsenter \
         cost subtracted; qus starts cold (empty state dir, on tmpfs as /run/qusd is).\n\n",
        if s.quick {
            " (quick mode: not for quoting)"
        } else {
            ""
        },
        host_info(),
        s.apply_trials
    ));

    // 1 + 2: cold apply and re-apply, quiet and loaded.
    out.push_str("## Cold apply and re-apply\n\n");
    out.push_str(&cold_apply(&s, &p, false));
    out.push_str(&cold_apply(&s, &p, true));
    if only_apply {
        println!("{out}");
        return;
    }

    // 3: reaction (qusd only).
    out.push_str("## Reaction (qusd; the peers have no such path)\n\n");
    out.push_str("| event | median ms | p99 ms | min–max | peers |\n|---|---|---|---|---|\n");
    let never = "never: needs a manual re-run";
    for (what, stat, peers) in [
        (
            "emulator renamed into the search dir → entry live",
            latency(&s),
            never,
        ),
        (
            "emulator upgraded (renamed over) under F → re-registered from the new file (which then runs)",
            upgrade(&s),
            "never: the old file runs until a manual re-run",
        ),
        (
            "owned entry removed by hand → restored",
            restore(&s, "-1"),
            never,
        ),
        (
            "owned entry disabled by hand → enabled again",
            restore(&s, "0"),
            never,
        ),
    ] {
        out.push_str(&format!(
            "| {what} | {:.1} | {:.1} | {:.1}–{:.1} | {peers} |\n",
            stat.median, stat.p99, stat.min, stat.max
        ));
    }
    out.push('\n');
    out.push_str(&burst_of_emulators());
    out.push_str(&slow_copy());
    out.push('\n');

    // 4: idle cost and memory.
    out.push_str(&format!(
        "## Idle ({} s, no events) and memory\n\n",
        s.idle_secs
    ));
    out.push_str("| qusd | CPU ms | voluntary ctx switches | involuntary | RSS after start KiB | RSS after idle KiB | peak RSS KiB |\n|---|---|---|---|---|---|---|\n");
    for wd in [None, Some("10000000")] {
        out.push_str(&idle(&s, wd));
    }
    let peak = qus_register_peak_rss();
    out.push_str(&format!(
        "\n`qus register` (32 entries, cold): peak RSS {peak} KiB. qusd peak RSS over a \
         1000-entry pass: {} KiB. Shipped binaries (`target/dist`: static, stripped): qus {} bytes, qusd {} bytes.\n\n",
        qusd_peak_rss_1000(),
        fs::metadata(qus_bin()).map(|m| m.len()).unwrap_or(0),
        fs::metadata(qusd_bin()).map(|m| m.len()).unwrap_or(0)
    ));

    // 5: scale.
    out.push_str("## Scale\n\n| custom entries | cold `qus register` ms | re-apply ms | writes on re-apply |\n|---|---|---|---|\n");
    for &n in &s.scale {
        out.push_str(&scale_entries(n));
    }
    out.push_str(&burst(&s));
    println!("{out}");
}

/// The cold-apply table for one mode: every tool in a fresh private
/// instance, interleaved, with the per-entry cost and the ratios the
/// goals are stated in.
fn cold_apply(s: &Settings, p: &Peers, loaded: bool) -> String {
    let _hog = loaded.then(CpuHog::start);
    let tools = [
        Tool::Nothing,
        Tool::Qus,
        Tool::CRegistrar,
        Tool::SystemdBinfmt,
        Tool::UpdateBinfmts,
        Tool::QemuBinfmtConf,
        Tool::CStart,
        Tool::RustStart,
        Tool::QusStart,
        Tool::ChecksFloor,
    ];
    // The registrars' table; the start-up floors get their own.
    let registrars = &tools[1..6];
    let mut cold: BTreeMap<Tool, Vec<f64>> = BTreeMap::new();
    let mut again: BTreeMap<Tool, Vec<f64>> = BTreeMap::new();
    let mut count: BTreeMap<Tool, usize> = BTreeMap::new();
    let mut again_fails: BTreeMap<Tool, usize> = BTreeMap::new();
    for round in 0..s.apply_trials {
        for k in 0..tools.len() {
            let t = tools[(round + k) % tools.len()];
            let sb = bench_sandbox();
            if matches!(t, Tool::CRegistrar | Tool::ChecksFloor) {
                // Export (untimed) before the clock starts.
                let _ = apply_command(t, &sb, p);
            }
            let d1 = run_quiet(apply_command(t, &sb, p));
            // A second run over the same state: some tools fail (EEXIST).
            let (d2, ok, _) = run_status(apply_command(t, &sb, p));
            if !ok {
                *again_fails.entry(t).or_insert(0) += 1;
            }
            cold.entry(t).or_default().push(d1.as_secs_f64() * 1000.0);
            again.entry(t).or_default().push(d2.as_secs_f64() * 1000.0);
            count.insert(t, entries(&sb));
        }
    }
    let base_cold = stat(cold[&Tool::Nothing].clone()).median;
    let base_again = stat(again[&Tool::Nothing].clone()).median;
    let adj = |v: &[f64], base: f64| stat(v.iter().map(|x| (x - base).max(0.0)).collect());
    let per_entry = |t: Tool| adj(&cold[&t], base_cold).median / count[&t].max(1) as f64;
    // Whole process, as a user sees it: the raw time (the namespace entry
    // is the same for both and stays in).
    let raw = |t: Tool| stat(cold[&t].clone()).median;
    let qus_again = adj(&again[&Tool::Qus], base_again).median;
    // Writes on the re-apply, counted with strace in separate (untimed) runs.
    let mut writes: BTreeMap<Tool, BTreeMap<&'static str, usize>> = BTreeMap::new();
    if !loaded {
        for &t in registrars {
            let sb = bench_sandbox();
            run_quiet(apply_command(t, &sb, p));
            writes.insert(t, count_writes(t, &sb, p));
        }
    }
    let mode = if loaded {
        "loaded (a busy loop on every core)"
    } else {
        "quiet machine"
    };
    let mut out = format!("### {mode}\n\n");
    out.push_str("| tool | entries | cold apply ms, net | whole process ms | per entry µs | qus ÷ tool, per entry | re-apply ms | × qus | writes on re-apply |\n|---|---|---|---|---|---|---|---|---|\n");
    for &t in registrars {
        let c = adj(&cold[&t], base_cold);
        let a = adj(&again[&t], base_again);
        let mut wtext = match writes.get(&t) {
            None => "(counted on the quiet run)".to_string(),
            Some(w) if w.is_empty() => "none".to_string(),
            Some(w) => w
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        if let Some(n) = again_fails.get(&t) {
            wtext.push_str(&format!("; exits non-zero ({n}/{} runs)", s.apply_trials));
        }
        let ratio = if per_entry(t) > 0.001 {
            format!("{:.2}", per_entry(Tool::Qus) / per_entry(t))
        } else {
            "(below the noise)".into()
        };
        out.push_str(&format!(
            "| {} | {} | {:.2} ({:.2}) | {:.2} | {:.0} | {} | {:.2} ({:.2}) | {:.1} | {} |\n",
            t.name(),
            count[&t],
            c.median,
            c.p99,
            raw(t),
            per_entry(t) * 1000.0,
            ratio,
            a.median,
            a.p99,
            a.median / qus_again.max(0.01),
            wtext
        ));
    }
    out.push_str(&format!(
        "\nNamespace + nsenter cost subtracted: {base_cold:.2} ms. Goals: qus per entry ≤ 0.5× \
         systemd-binfmt — **{:.2}×**; whole qus process ≤ 1.3× the minimal C registrar \
         writing the same {} lines — **{:.2}×**. systemd-binfmt and update-binfmts register \
         Debian's {} qemu formats; qus, the C registrar and qemu-binfmt-conf.sh every foreign \
         emulator in /usr/bin.\n\n",
        per_entry(Tool::Qus) / per_entry(Tool::SystemdBinfmt).max(1e-9),
        count[&Tool::CRegistrar],
        raw(Tool::Qus) / raw(Tool::CRegistrar),
        p.binfmt_d.len()
    ));
    out.push_str(&start_up_floors(&cold, base_cold, &raw));
    out
}

/// What a process costs before it registers anything, next to the whole
/// runs above: how much of qus's time is start-up (runtime, argument
/// parsing, a larger binary) and how much is its work.
fn start_up_floors(
    cold: &BTreeMap<Tool, Vec<f64>>,
    base: f64,
    raw: &dyn Fn(Tool) -> f64,
) -> String {
    let mut out = String::from(
        "Floors (same rounds): start-up alone (nothing registered), and the system calls \
         of qus's checks made by a C program with no logic between them \
         (`bench/checks_floor.c`: the lines written as above, every interpreter's safety \
         `lstat`, open, 4 KiB read and close, the lock, the binfmt_misc and state-dir \
         look-ups, the records replaced atomically; not the native question):\n\n\
         | process | whole process ms | net ms | ÷ C registrar's whole process |\n|---|---|---|---|\n",
    );
    for t in [
        Tool::CStart,
        Tool::RustStart,
        Tool::QusStart,
        Tool::ChecksFloor,
    ] {
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} |\n",
            t.name(),
            raw(t),
            stat(cold[&t].clone()).median - base,
            raw(t) / raw(Tool::CRegistrar)
        ));
    }
    let work = |run: Tool, start: Tool| raw(run) - raw(start);
    out.push_str(&format!(
        "\nWork beyond start-up: qus {:.2} ms (`qus register` − `qus --version`), the C \
         registrar {:.2} ms (32 lines − none), the system calls of qus's checks alone {:.2} ms \
         (checks floor − none). 1.3× the C registrar's whole process leaves qus {:.2} ms \
         beyond its start-up.\n\n",
        work(Tool::Qus, Tool::QusStart),
        work(Tool::CRegistrar, Tool::CStart),
        work(Tool::ChecksFloor, Tool::CStart),
        1.3 * raw(Tool::CRegistrar) - raw(Tool::QusStart)
    ));
    out
}

fn daemon_sandbox(debounce: u64) -> Sandbox {
    let sb = Sandbox::new();
    sb.write_config(
        "10-bench.toml",
        &format!(
            "[qemu]\nsearch_path = [\"{}\"]\n[daemon]\ndebounce_ms = {debounce}\n",
            sb.bin().display()
        ),
    );
    sb
}

fn stage_emulator(sb: &Sandbox, arch: &str) -> PathBuf {
    let stage = sb.path().join("stage");
    fs::create_dir_all(&stage).expect("mkdir");
    let staged = stage.join(format!("qemu-{arch}-static"));
    if fs::hard_link(require_qemu(arch), &staged).is_err() {
        fs::copy(require_qemu(arch), &staged).expect("copy");
    }
    staged
}

fn latency(s: &Settings) -> Stat {
    let sb = daemon_sandbox(100);
    let staged = stage_emulator(&sb, "aarch64");
    let live = sb.bin().join("qemu-aarch64-static");
    let entry = sb.binfmt_outside().join("qemu-aarch64");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    let mut v = vec![];
    for _ in 0..s.latency_trials {
        let t0 = Instant::now();
        fs::rename(&staged, &live).expect("rename in");
        spin_until(t0, "entry never appeared", || entry.exists());
        v.push(t0.elapsed().as_secs_f64() * 1000.0);
        fs::rename(&live, &staged).expect("rename out");
        wait_for(10, "entry removed", || !entry.exists());
        d.settle(&sb);
    }
    stat(v)
}

/// Poll `cond` closely (the thing measured is milliseconds), up to 10 s.
fn spin_until(t0: Instant, what: &str, mut cond: impl FnMut() -> bool) {
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// An owned entry removed (`-1`) or disabled (`0`) behind qusd's back:
/// time until it is back and enabled.
fn restore(s: &Settings, how: &str) -> Stat {
    let sb = daemon_sandbox(100);
    sb.install_emulator("aarch64");
    let entry = sb.binfmt_outside().join("qemu-aarch64");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    let live = || {
        fs::read_to_string(&entry)
            .map(|t| t.starts_with("enabled"))
            .unwrap_or(false)
    };
    let mut v = vec![];
    for i in 0..s.latency_trials {
        // Five identical repairs in quick succession look like a fight
        // with another registrar, and qusd stops; SIGHUP (as an
        // administrator would) starts the count afresh.
        if i % 4 == 3 {
            d.signal("HUP");
        }
        d.settle(&sb);
        let t0 = Instant::now();
        fs::write(&entry, how).expect("remove or disable by hand");
        spin_until(t0, "entry never restored", live);
        v.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    assert_eq!(
        d.count("gave up on"),
        0,
        "the benchmark must not trip the fight breaker"
    );
    stat(v)
}

/// Every emulator Debian ships renamed into the search dir at once: one
/// write per emulator qus wants, no removal, whatever the passes.
fn burst_of_emulators() -> String {
    let sb = daemon_sandbox(100);
    let mut names = vec![];
    for e in fs::read_dir("/usr/bin")
        .expect("/usr/bin")
        .filter_map(Result::ok)
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("qemu-") && name.ends_with("-static") {
            names.push(name);
        }
    }
    let stage = sb.path().join("stage");
    fs::create_dir_all(&stage).expect("mkdir");
    for name in &names {
        let from = Path::new("/usr/bin").join(name);
        if fs::hard_link(&from, stage.join(name)).is_err() {
            fs::copy(&from, stage.join(name)).expect("copy");
        }
    }
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    let mut watch = WriteWatch::new(&sb.binfmt_outside());
    let t0 = Instant::now();
    for name in &names {
        fs::rename(stage.join(name), sb.bin().join(name)).expect("rename in");
    }
    d.settle(&sb);
    let settled = t0.elapsed().as_secs_f64() * 1000.0;
    // Writes from qusd's own account (one line per write; `register`
    // MODIFY events coalesce when several writes share a descriptor),
    // removals from the kernel's (DELETE of an entry).
    let writes = d.count(" INFO registered qemu-") + d.count(" INFO replaced qemu-");
    let removals = watch
        .drain()
        .iter()
        .filter(|e| e.contains("DELETE"))
        .count()
        + d.count(" INFO removed qemu-");
    let registered = sb.entries().len();
    format!(
        "{} emulators renamed into the search dir at once: {registered} registered (the \
         foreign ones) with **{writes} writes and {removals} removals**, all handled within \
         {settled:.0} ms.\n\n",
        names.len()
    )
}

/// An emulator copied in slowly (1 MiB pieces over about 2 s, executable
/// from the first byte): it must not be registered before the last byte,
/// and the writer must never see ETXTBSY (an F entry would pin the file).
fn slow_copy() -> String {
    let sb = daemon_sandbox(100);
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    let bytes = fs::read(require_qemu("aarch64")).expect("read emulator");
    let pieces: Vec<&[u8]> = bytes.chunks(1 << 20).collect();
    let gap = Duration::from_millis(2000 / pieces.len().max(1) as u64);
    let path = sb.bin().join("qemu-aarch64-static");
    let entry = sb.binfmt_outside().join("qemu-aarch64");
    let mut early = false;
    let mut etxtbsy = 0;
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&path)
            .expect("create");
        for piece in &pieces {
            if let Err(e) = f.write_all(piece) {
                if e.raw_os_error() == Some(26) {
                    etxtbsy += 1;
                }
            }
            early |= entry.exists();
            std::thread::sleep(gap);
        }
    }
    let t0 = Instant::now();
    spin_until(t0, "never registered after the copy", || entry.exists());
    d.settle(&sb);
    format!(
        "Slow copy ({} MiB in 1 MiB pieces over {:.1} s, mode 0755 from the first byte): \
         registered before the last byte: **{}**; ETXTBSY seen by the writer: **{etxtbsy}**; \
         live {:.1} ms after the close.\n",
        pieces.len(),
        (gap * pieces.len() as u32).as_secs_f64(),
        if early { "yes" } else { "no" },
        t0.elapsed().as_secs_f64() * 1000.0
    )
}

/// qusd's peak RSS over a pass of 1000 custom entries.
fn qusd_peak_rss_1000() -> u64 {
    let sb = Sandbox::new();
    let mut cfg = String::from("[qemu]\ntargets = []\n");
    for i in 0..1000 {
        cfg.push_str(&format!(
            "[entry.qus-bench-{i}]\ntype = \"extension\"\nextension = \"qb{i}\"\ninterpreter = \"/bin/sh\"\n"
        ));
    }
    sb.write_config("10-bench.toml", &cfg);
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    assert_eq!(sb.entries().len(), 1000);
    proc_field(d.pid(), "VmHWM:")
}

/// Upgrade by rename under F: time until the kernel runs the new file.
/// The "emulator" alternates between the real qemu-aarch64 (the probe then
/// prints its own line) and another ELF program (the x86_64 probe, which
/// prints "qus-probe x86_64" whatever it is given). Both are ELF files, so
/// F really pins the old one until qusd re-registers (a script would not
/// show it: the kernel re-opens a script's interpreter by path).
fn upgrade(s: &Settings) -> Stat {
    let sb = daemon_sandbox(100);
    sb.install_emulator("aarch64");
    let live = sb.bin().join("qemu-aarch64-static");
    let real = sb.path().join("real-qemu");
    fs::copy(&live, &real).expect("copy");
    let other = sb.path().join("other-elf");
    fs::write(&other, qus::probe::find("x86_64").expect("probe").program).expect("write");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    let probe = qus::probe::find("aarch64").expect("probe").program;
    let mut watch = WriteWatch::new(&sb.binfmt_outside());
    let mut v = vec![];
    for i in 0..s.latency_trials {
        let (src, want) = if i % 2 == 0 {
            (&other, "qus-probe x86_64\n")
        } else {
            (&real, "qus-probe aarch64\n")
        };
        let next = sb.bin().join(".next");
        fs::copy(src, &next).expect("stage");
        fs::set_permissions(&next, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        watch.drain();
        let t0 = Instant::now();
        fs::rename(&next, &live).expect("upgrade");
        // Timed to the re-registration: the kernel reports the write to
        // `register` once it returned, and from then on every exec runs
        // the new file (F: opened at registration). Timing a program run
        // instead would add the run itself (a QEMU start, several ms).
        spin_until(t0, "upgrade never re-registered", || {
            watch.drain().iter().any(|e| e.ends_with(" register"))
        });
        v.push(t0.elapsed().as_secs_f64() * 1000.0);
        // Untimed: the new file is what runs now.
        let out = sb.run_program("probe", probe);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want,
            "after the re-registration the kernel still ran the old file"
        );
        d.settle(&sb);
    }
    stat(v)
}

fn proc_field(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn idle(s: &Settings, watchdog: Option<&str>) -> String {
    let sb = Sandbox::new();
    sb.write_config("10-bench.toml", "[qemu]\nsearch_path = [\"/usr/bin\"]\n");
    let mut n = NotifySocket::new(sb.path());
    let env: Vec<(&str, &str)> = watchdog.iter().map(|w| ("WATCHDOG_USEC", *w)).collect();
    let d = sb.qusd(Some(&n), &env);
    n.wait(20, "READY=1", |m| m.contains("READY=1"));
    std::thread::sleep(Duration::from_millis(200));
    let pid = d.pid();
    let rss0 = proc_field(pid, "VmRSS:");
    let (v0, i0, c0) = (
        proc_field(pid, "voluntary_ctxt_switches:"),
        proc_field(pid, "nonvoluntary_ctxt_switches:"),
        cpu_ticks(pid),
    );
    std::thread::sleep(Duration::from_secs(s.idle_secs));
    format!(
        "| {} | {} | {} | {} | {rss0} | {} | {} |\n",
        watchdog.map_or("no watchdog".to_string(), |w| format!(
            "WATCHDOG_USEC={} s",
            w.parse::<u64>().unwrap_or(0) / 1_000_000
        )),
        (cpu_ticks(pid) - c0) * 10,
        proc_field(pid, "voluntary_ctxt_switches:") - v0,
        proc_field(pid, "nonvoluntary_ctxt_switches:") - i0,
        proc_field(pid, "VmRSS:"),
        proc_field(pid, "VmHWM:")
    )
}

fn qus_register_peak_rss() -> String {
    let sb = Sandbox::new();
    sb.write_config("10-bench.toml", "[qemu]\nsearch_path = [\"/usr/bin\"]\n");
    let out = sb
        .command("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(qus_bin())
        .arg("--binfmt-misc")
        .arg(sb.binfmt())
        .arg("--state-dir")
        .arg(sb.state())
        .arg("--config-dir")
        .arg(sb.etc())
        .args(["--log-level", "warn", "register"])
        .output()
        .expect("time qus register (apt-get install time)");
    String::from_utf8_lossy(&out.stderr)
        .trim()
        .lines()
        .last()
        .unwrap_or("?")
        .to_string()
}

fn scale_entries(n: usize) -> String {
    let sb = Sandbox::new();
    let mut cfg = String::from("[qemu]\ntargets = []\n");
    for i in 0..n {
        cfg.push_str(&format!("[entry.qus-bench-{i}]\ntype = \"extension\"\nextension = \"qb{i}\"\ninterpreter = \"/bin/sh\"\n"));
    }
    sb.write_config("10-bench.toml", &cfg);
    let t0 = Instant::now();
    sb.qus_ok(&["--log-level", "warn", "register"]);
    let cold = t0.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(sb.entries().len(), n);
    let t0 = Instant::now();
    let out = sb.qus_ok(&["--log-level", "warn", "register"]);
    let again = t0.elapsed().as_secs_f64() * 1000.0;
    let writes = out
        .split(", ")
        .find(|p| p.contains("writes"))
        .and_then(|p| p.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    format!("| {n} | {cold:.1} | {again:.1} | {writes} |\n")
}

/// A burst of file events in the search dir, one of them a real emulator.
fn burst(s: &Settings) -> String {
    let sb = daemon_sandbox(100);
    let staged = stage_emulator(&sb, "riscv64");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    let passes_before = d.count(" INFO pass ");
    let mut watch = common::WriteWatch::new(&sb.binfmt_outside());
    let t0 = Instant::now();
    for i in 0..s.burst - 1 {
        let tmp = sb.bin().join(format!(".junk-{i}"));
        fs::write(&tmp, b"x").expect("junk");
        fs::rename(&tmp, sb.bin().join(format!("junk-{i}"))).expect("rename");
    }
    fs::rename(&staged, sb.bin().join("qemu-riscv64-static")).expect("rename in");
    let entry = sb.binfmt_outside().join("qemu-riscv64");
    while !entry.exists() {
        std::thread::sleep(Duration::from_micros(100));
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "burst never settled"
        );
    }
    let settled = t0.elapsed().as_secs_f64() * 1000.0;
    std::thread::sleep(Duration::from_millis(500));
    let passes = d.count(" INFO pass ") - passes_before;
    let events = watch.drain();
    let deletes = events.iter().filter(|e| e.contains("DELETE")).count();
    format!(
        "\nBurst of {} file events in the search dir (one a real emulator): settled in {settled:.1} ms, \
         {passes} reconcile pass(es), {} new entry, {deletes} removals (one write per real change).\n",
        s.burst,
        sb.entries().len()
    )
}
