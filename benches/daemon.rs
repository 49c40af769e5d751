//! qusd benchmark: reaction latency, idle cost, memory. Prints a markdown
//! table. Whole-process measurements, so a plain harness, not criterion.
//!
//!   cargo bench --bench daemon                 # full: 100 trials, 30 s idle
//!   QUS_BENCH_QUICK=1 cargo bench --bench daemon   # CI: checks it still runs
//!
//! Needs root (or user namespaces), Linux >= 6.7, qemu-user-static.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{require_qemu, wait_for, NotifySocket, Sandbox};

struct Settings {
    trials: usize,
    idle_secs: u64,
}

fn proc_field(pid: u32, key: &str) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = s.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Rename an emulator into the search dir and time until its entry is live.
fn latency(debounce_ms: u64, s: &Settings) -> Vec<f64> {
    let sb = Sandbox::new();
    sb.write_config(
        "10-bench.toml",
        &format!(
            "[qemu]\nsearch_path = [\"{}\"]\n[daemon]\ndebounce_ms = {debounce_ms}\n",
            sb.bin().display()
        ),
    );
    let stage = sb.path().join("stage");
    fs::create_dir(&stage).expect("mkdir");
    let src = require_qemu("aarch64");
    let staged = stage.join("qemu-aarch64-static");
    if fs::hard_link(&src, &staged).is_err() {
        fs::copy(&src, &staged).expect("copy");
    }
    let live = sb.bin().join("qemu-aarch64-static");
    let entry = sb.binfmt_outside().join("qemu-aarch64");
    let mut n = NotifySocket::new(sb.path());
    let _d = sb.qusd_ready(&mut n);
    let mut samples = vec![];
    for _ in 0..s.trials {
        let t0 = Instant::now();
        fs::rename(&staged, &live).expect("rename in");
        while !entry.exists() {
            std::thread::sleep(Duration::from_micros(50));
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "entry never appeared"
            );
        }
        samples.push(t0.elapsed().as_secs_f64() * 1000.0);
        fs::rename(&live, &staged).expect("rename out");
        wait_for(10, "entry removed", || !entry.exists());
        std::thread::sleep(Duration::from_millis(debounce_ms + 20));
    }
    samples.sort_by(f64::total_cmp);
    samples
}

fn main() {
    let quick = std::env::var_os("QUS_BENCH_QUICK").is_some();
    let s = if quick {
        Settings {
            trials: 5,
            idle_secs: 2,
        }
    } else {
        Settings {
            trials: 100,
            idle_secs: 30,
        }
    };
    let mut out = String::new();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    out.push_str(&format!(
        "# qusd benchmark{}\n\nLinux {}, {} CPUs ({cpu}), {} trials, idle window {} s\n\n",
        if quick {
            " (quick mode: not for quoting)"
        } else {
            ""
        },
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        s.trials,
        s.idle_secs
    ));

    out.push_str("## Reaction latency: emulator renamed into the search dir → entry live\n\n");
    out.push_str("| debounce_ms | median ms | p99 ms | min ms | max ms | median − debounce ms |\n|---|---|---|---|---|---|\n");
    for debounce in [100u64, 0] {
        let v = latency(debounce, &s);
        let med = percentile(&v, 0.5);
        out.push_str(&format!(
            "| {debounce} | {med:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            percentile(&v, 0.99),
            v[0],
            v[v.len() - 1],
            med - debounce as f64
        ));
    }

    // Idle cost and memory, with the host's 32 emulators registered.
    out.push_str("\n## Idle cost and memory (32 emulators from /usr/bin registered)\n\n");
    out.push_str("| watchdog | CPU time ms | voluntary ctx switches | involuntary | RSS after start KiB | peak RSS KiB |\n|---|---|---|---|---|---|\n");
    for watchdog in [None, Some("10000000")] {
        let sb = Sandbox::new();
        sb.write_config("10-bench.toml", "[qemu]\nsearch_path = [\"/usr/bin\"]\n");
        let mut n = NotifySocket::new(sb.path());
        let env: Vec<(&str, &str)> = watchdog.iter().map(|w| ("WATCHDOG_USEC", *w)).collect();
        let d = sb.qusd(Some(&n), &env);
        n.wait(20, "READY=1", |m| m.contains("READY=1"));
        std::thread::sleep(Duration::from_millis(200));
        let pid = d.pid();
        let rss = proc_field(pid, "VmRSS:");
        let (v0, i0, c0) = (
            proc_field(pid, "voluntary_ctxt_switches:"),
            proc_field(pid, "nonvoluntary_ctxt_switches:"),
            cpu_ticks(pid),
        );
        std::thread::sleep(Duration::from_secs(s.idle_secs));
        let (v1, i1, c1) = (
            proc_field(pid, "voluntary_ctxt_switches:"),
            proc_field(pid, "nonvoluntary_ctxt_switches:"),
            cpu_ticks(pid),
        );
        let tick_ms = 1000.0 / 100.0; // USER_HZ is 100 on Linux
        out.push_str(&format!(
            "| {} | {:.0} | {} | {} | {rss} | {} |\n",
            watchdog.map_or("off".to_string(), |w| format!(
                "{} s",
                w.parse::<u64>().unwrap_or(0) / 1_000_000
            )),
            (c1 - c0) as f64 * tick_ms,
            v1 - v0,
            i1 - i0,
            proc_field(pid, "VmHWM:"),
        ));
    }

    out.push_str("\n## Binaries\n\n| file | bytes |\n|---|---|\n");
    for bin in [common::QUS, common::QUSD] {
        let size = fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
        let name = Path::new(bin)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push_str(&format!("| {name} | {size} |\n"));
    }
    println!("{out}");
}
