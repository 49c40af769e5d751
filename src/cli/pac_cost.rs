//! What pointer authentication costs under an aarch64 emulator: `qus
//! test`'s timing of the PAC probe (`probe::PAC_PROBE`) under the
//! emulator's default CPU and under a CPU model without PAC.
//!
//! Debian 13 builds every arm64 package with branch protection: each
//! function signs and checks its return address. QEMU's default CPU
//! (`max`) emulates that with the architected QARMA5 cipher, which QEMU
//! 7.2 does so slowly that Debian 13's `busybox gzip` runs ~17x slower
//! than under a CPU without PAC; 10.0 still costs ~2x, 11.1 nothing
//! measurable. The probe is nothing but such calls, so its ratio is the
//! upper bound of what a program pays; real programs pay part of it.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::probe::{self, RunResult};

/// A CPU model without pointer authentication that every QEMU since 2.x
/// knows (an ARMv8.0 core): the fix for containers that need speed on an
/// old QEMU.
pub const PAC_FREE_CPU: &str = "cortex-a57";

/// Above this ratio the cost is worth a line in `qus test`'s report.
pub const WORTH_SAYING: f64 = 1.5;

#[derive(Debug, Clone, Serialize)]
pub struct PacCost {
    /// The probe under the emulator's default CPU (best of 2), ms.
    pub default_cpu_ms: u64,
    /// Under [`PAC_FREE_CPU`] (best of 3), ms.
    pub pac_free_cpu_ms: u64,
    pub pac_free_cpu: &'static str,
    /// How many times slower pointer-authenticated calls run under the
    /// default CPU.
    pub ratio: f64,
}

/// Time the PAC probe through whichever entry the kernel picks for
/// aarch64 programs. `None` when it does not run (then `qus test`'s own
/// aarch64 result says why).
pub fn measure(timeout: Duration) -> Option<PacCost> {
    let best = |env: &[(&str, &str)], runs: usize| -> Option<Duration> {
        (0..runs)
            .map(|_| timed(env, timeout))
            .collect::<Option<Vec<Duration>>>()?
            .into_iter()
            .min()
    };
    let free = best(&[("QEMU_CPU", PAC_FREE_CPU)], 3)?;
    let default = best(&[], 2)?;
    let ms = |d: Duration| d.as_millis() as u64;
    Some(PacCost {
        default_cpu_ms: ms(default),
        pac_free_cpu_ms: ms(free),
        pac_free_cpu: PAC_FREE_CPU,
        ratio: ratio(default, free),
    })
}

/// One run, wall clock; `None` unless it printed its line.
fn timed(env: &[(&str, &str)], timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let running = probe::start_with_env(&probe::PAC_PROBE, env).ok()?;
    (running.finish(timeout) == RunResult::Pass).then(|| start.elapsed())
}

/// default / free, to one decimal; a run too short to tell counts as 1 ms.
fn ratio(default: Duration, free: Duration) -> f64 {
    let free = free.as_secs_f64().max(0.001);
    (default.as_secs_f64() / free * 10.0).round() / 10.0
}

/// The line `qus test` prints when the cost is worth saying, for an
/// emulator of this QEMU version.
pub fn advice(cost: &PacCost, version: Option<&str>) -> Option<String> {
    (cost.ratio > WORTH_SAYING).then(|| {
        let qemu = version
            .and_then(|v| v.split_whitespace().next())
            .map_or("this QEMU".to_string(), |v| format!("QEMU {v}"));
        format!(
            "aarch64: programs built with pointer authentication (Debian 13's arm64 packages, \
             most current distributions') run up to {:.0}x slower under {qemu}'s default CPU \
             than without it ({} ms against {} ms for the probe's signed calls); a current \
             QEMU costs nothing measurable (QEMU 11: see docs/qemu.md), or set \
             QEMU_CPU={} in the containers that need the speed",
            cost.ratio, cost.default_cpu_ms, cost.pac_free_cpu_ms, cost.pac_free_cpu
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_and_when_it_is_said() {
        let ms = Duration::from_millis;
        assert_eq!(ratio(ms(1400), ms(20)), 70.0);
        assert_eq!(ratio(ms(30), ms(20)), 1.5);
        assert_eq!(
            ratio(ms(5), ms(0)),
            5.0,
            "a free run under 1 ms counts as 1 ms"
        );
        let cost = |r| PacCost {
            default_cpu_ms: 1400,
            pac_free_cpu_ms: 20,
            pac_free_cpu: PAC_FREE_CPU,
            ratio: r,
        };
        let line = advice(&cost(70.0), Some("7.2.22")).expect("worth saying");
        assert!(
            line.contains("70x slower under QEMU 7.2.22's default CPU"),
            "{line}"
        );
        assert!(line.contains("QEMU_CPU=cortex-a57"), "{line}");
        assert!(advice(&cost(1.2), Some("11.1.3")).is_none());
    }
}
