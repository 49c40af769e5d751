//! QEMU channels (packaging/qemu/channel.sh): each channel's emulators,
//! Debian's real builds, run a real foreign busybox through a private
//! binfmt_misc instance registered by the real `qus`, and `qus test`'s
//! system call checks tell the channels apart: the openat2 check runs
//! under 11 and 10 and is reported missing under 7.2. hexagon's probe
//! (assembled by LLVM) runs under each.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use common::*;

/// Fetching is done once per machine: the emulators stay in
/// /var/cache/qus/emulators/CHANNEL (channel.sh keeps the packages).
static FETCH: Mutex<()> = Mutex::new(());

fn channel(name: &str) -> PathBuf {
    let _one = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    let dir = PathBuf::from(format!("/var/cache/qus/emulators/{name}"));
    if dir.join(".version").is_file() {
        return dir;
    }
    require_tool("apt-get", "apt");
    let new = PathBuf::from(format!("/var/cache/qus/emulators/{name}.new"));
    let _ = std::fs::remove_dir_all(&new);
    std::fs::create_dir_all(&new).expect("mkdir /var/cache/qus/emulators (run the tests as root)");
    let arch = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .expect("dpkg");
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/qemu/channel.sh"
    ))
    .args([name, stdout(&arch).trim()])
    .arg(&new)
    .output()
    .expect("run packaging/qemu/channel.sh");
    assert!(
        out.status.success(),
        "packaging/qemu/channel.sh {name} could not fetch QEMU {name} from deb.debian.org: {}",
        stderr(&out)
    );
    std::fs::write(new.join(".version"), stdout(&out)).expect("write .version");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&new, &dir).expect("rename");
    dir
}

/// Debian's arm64 busybox, from the rootless tests' setup.
fn busybox_arm64() -> PathBuf {
    let p = PathBuf::from("/var/cache/qus-rootless/rootfs-arm64/bin/busybox");
    assert!(
        p.is_file(),
        "this test needs Debian's arm64 busybox in {}: run tests/rootless/setup.sh as root",
        p.display()
    );
    p
}

fn check_channel(name: &str, has_openat2: bool) {
    let emulators = channel(name);
    let sb = Sandbox::new();
    sb.write_config(
        "10-channel.toml",
        &format!("[qemu]\nsearch_path = [\"{}\"]\n", emulators.display()),
    );
    sb.qus_ok(&["register", "aarch64", "s390x", "hexagon"]);
    let entry = sb.entry("qemu-aarch64").expect("qemu-aarch64 registered");
    assert!(
        entry.contains(&format!("interpreter {}/qemu-aarch64", emulators.display())),
        "channel {name}: {entry}"
    );

    // A real foreign program does real work through the channel's emulator.
    let out = sb
        .command(busybox_arm64())
        .args(["sh", "-c", "echo qus | sha256sum; busybox | head -1"])
        .output()
        .expect("run busybox");
    assert!(
        stdout(&out).starts_with(&host_sha256("qus\n")),
        "channel {name}: busybox sha256sum printed {:?} ({})",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("BusyBox v1."),
        "channel {name}: {}",
        stdout(&out)
    );

    let report: serde_json::Value =
        serde_json::from_str(&sb.qus_ok(&["test", "--json", "aarch64", "s390x", "hexagon"]))
            .expect("json");
    for r in report["results"].as_array().expect("results") {
        let arch = r["arch"].as_str().unwrap_or("?");
        assert_eq!(r["result"], "pass", "channel {name} {arch}: {r}");
        let version = r["emulator_version"].as_str().unwrap_or("");
        assert!(
            version.starts_with(&format!("{name}.")),
            "channel {name} {arch}: QEMU {version}"
        );
        let openat2 = &r["syscalls"]["openat2"];
        let lacking: Vec<&str> = r["lacking"]
            .as_array()
            .map(|l| l.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if has_openat2 {
            assert_eq!(openat2, "present", "channel {name} {arch}: {r}");
            assert!(!lacking.contains(&"openat2"), "channel {name} {arch}: {r}");
        } else {
            assert_eq!(openat2, "missing", "channel {name} {arch}: {r}");
            assert!(lacking.contains(&"openat2"), "channel {name} {arch}: {r}");
        }
        // Present under every QEMU qus ships: the checks are not all "missing".
        assert_eq!(
            r["syscalls"]["close_range"], "present",
            "channel {name} {arch}: {r}"
        );
    }
    let text = sb.qus_ok(&["test", "aarch64"]);
    assert_eq!(
        text.contains("openat2: ENOSYS under aarch64: tar"),
        !has_openat2,
        "channel {name}: {text}"
    );
    pac_cost_is_reported(name, &report, &text);
}

/// `qus test` times pointer-authenticated calls under the default CPU and
/// under one without PAC. QEMU 7.2 emulates PAC so slowly (the probe is
/// ~70x slower there on this kind of machine, Debian 13's gzip ~17x) that
/// even a loaded machine shows far more than 5x, and the report says what
/// to do; 11's default CPU costs little (its ratio stays far below 7.2's).
fn pac_cost_is_reported(name: &str, report: &serde_json::Value, text: &str) {
    let aarch64 = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["arch"] == "aarch64")
        .expect("aarch64 result");
    let ratio = aarch64["pac"]["ratio"]
        .as_f64()
        .unwrap_or_else(|| panic!("channel {name}: no PAC cost: {aarch64}"));
    assert_eq!(aarch64["pac"]["pac_free_cpu"], "cortex-a57");
    if name == "7.2" {
        assert!(ratio > 5.0, "channel 7.2: PAC ratio {ratio}");
        assert!(
            text.contains("run up to") && text.contains("QEMU_CPU=cortex-a57"),
            "channel 7.2: {text}"
        );
    } else if name == "11" {
        assert!(ratio < 5.0, "channel 11: PAC ratio {ratio}");
    }
}

fn host_sha256(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("sha256sum");
    stdout(&out)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn channel_11_runs_busybox_and_has_openat2() {
    check_channel("11", true);
}

#[test]
fn channel_10_runs_busybox_and_has_openat2() {
    check_channel("10", true);
}

#[test]
fn channel_7_2_runs_busybox_and_lacks_openat2() {
    check_channel("7.2", false);
}

/// A package planted in the cache under the expected name (here one whose
/// `qemu-aarch64` is `/bin/true`) is never unpacked: channel.sh checks
/// every cached package against the SHA256 of the signed index before each
/// use, drops a mismatch and downloads the real one (safety round four,
/// point 5: a restored CI cache is exactly this case).
#[test]
fn a_planted_cached_package_is_refused_and_fetched_again() {
    channel("10"); // the real package is in the cache
    let _one = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/qemu/channel.sh");
    let arch = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .expect("dpkg");
    let arch = stdout(&arch).trim().to_string();
    let out = Command::new(script)
        .args(["--deb", "10", &arch])
        .output()
        .expect("channel.sh --deb");
    assert!(out.status.success(), "{}", stderr(&out));
    let cached = PathBuf::from(
        stdout(&out)
            .split_whitespace()
            .nth(1)
            .expect("version and path")
            .to_string(),
    );
    // The planted package: qemu-aarch64 is /bin/true.
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("pkg");
    std::fs::create_dir_all(root.join("DEBIAN")).expect("mkdir");
    std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    std::fs::copy("/bin/true", root.join("usr/bin/qemu-aarch64")).expect("copy");
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: qemu-user\nVersion: 1:10.0.0\nArchitecture: all\nMaintainer: x <x@x>\nDescription: planted\n",
    )
    .expect("control");
    let built = Command::new("dpkg-deb")
        .args(["-b", "-Zgzip"])
        .arg(&root)
        .arg(&cached)
        .output()
        .expect("dpkg-deb");
    assert!(built.status.success(), "{}", stderr(&built));
    let dest = work.path().join("emu");
    std::fs::create_dir_all(&dest).expect("mkdir");
    let out = Command::new(script)
        .args(["10", &arch])
        .arg(&dest)
        .output()
        .expect("channel.sh");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not match the SHA256 of the signed index"),
        "{}",
        stderr(&out)
    );
    let unpacked = std::fs::read(dest.join("qemu-aarch64")).expect("qemu-aarch64 unpacked");
    assert_ne!(unpacked, std::fs::read("/bin/true").expect("/bin/true"));
    let version = Command::new(dest.join("qemu-aarch64"))
        .arg("--version")
        .output()
        .expect("run it");
    assert!(
        stdout(&version).contains("qemu-aarch64 version 10."),
        "{}",
        stdout(&version)
    );
}

/// The interpreter path of an entry, from binfmt_misc.
fn interpreter_of(sb: &Sandbox, name: &str) -> String {
    sb.entry(name)
        .and_then(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("interpreter ").map(str::to_string))
        })
        .unwrap_or_default()
}

/// Copy a channel's emulators for `arches` into `dest` (root-owned, 0755),
/// the way a channel package lays them out under /usr/lib/qus/qemu/CHANNEL.
fn lay_out(channel_dir: &std::path::Path, dest: &std::path::Path, arches: &[&str]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dest).expect("mkdir");
    for a in arches {
        for name in [format!("qemu-{a}"), format!("qemu-{a}-static")] {
            let src = channel_dir.join(&name);
            if src.is_file() {
                std::fs::copy(&src, dest.join(&name)).expect("copy emulator");
                std::fs::set_permissions(dest.join(&name), std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
        }
    }
}

/// A sandbox whose "distribution" has QEMU 7.2's aarch64 and s390x
/// emulators, searched by a base drop-in; with channel 11's emulators (to
/// lay out) and where its package would put them. Returns (sandbox,
/// channel 11's emulators, the distribution's dir, the channel's dir).
fn distro_7_2() -> (Sandbox, PathBuf, PathBuf, PathBuf) {
    let old = channel("7.2");
    let new = channel("11");
    let sb = Sandbox::new();
    let distro = sb.path().join("distro");
    let channel_dir = sb.path().join("lib/qus/qemu/11");
    lay_out(&old, &distro, &["aarch64", "s390x"]);
    sb.write_config(
        "10-base.toml",
        &format!("[qemu]\nsearch_path = [\"{}\"]\n", distro.display()),
    );
    (sb, new, distro, channel_dir)
}

/// Several emulators for one arch: the newest QEMU wins wherever it is in
/// `search_path` (what a channel package relies on), `qus status -v` names
/// it, and a pinned `interpreter` still beats it.
#[test]
fn the_newest_qemu_in_the_search_path_is_registered() {
    let (sb, new, distro, channel_dir) = distro_7_2();
    lay_out(&new, &channel_dir, &["aarch64"]);
    sb.write_config(
        "40-qemu-11.toml",
        &format!(
            "[qemu]\nsearch_path = [\"{}\", {{append = true}}]\n",
            channel_dir.display()
        ),
    );
    sb.qus_ok(&["register", "aarch64", "s390x"]);
    assert_eq!(
        interpreter_of(&sb, "qemu-aarch64"),
        channel_dir.join("qemu-aarch64").display().to_string(),
        "11 comes later in search_path but is newer"
    );
    // Only one candidate: the distribution's, as before.
    assert_eq!(
        interpreter_of(&sb, "qemu-s390x"),
        distro.join("qemu-s390x-static").display().to_string()
    );
    let verbose = sb.qus_ok(&["status", "-v"]);
    assert!(
        verbose
            .lines()
            .any(|l| l.contains("qemu-aarch64") && l.contains("11.")),
        "status -v names the version: {verbose}"
    );
    // A pinned interpreter is what the administrator asked for.
    sb.write_config(
        "60-pin.toml",
        &format!(
            "[qemu.arch.aarch64]\ninterpreter = \"{}\"\n",
            distro.join("qemu-aarch64-static").display()
        ),
    );
    sb.qus_ok(&["register", "aarch64"]);
    assert_eq!(
        interpreter_of(&sb, "qemu-aarch64"),
        distro.join("qemu-aarch64-static").display().to_string()
    );
}

/// A channel package installed under a running qusd: its emulators and
/// its drop-in appear, and every entry with a newer emulator switches at
/// once, without a restart; removed, the entries go back to the
/// distribution's emulators. A foreign program started under the old
/// emulator runs on to the end throughout (F: the kernel holds its file).
#[test]
fn a_channel_package_switches_entries_live_and_rolls_back() {
    let (sb, new, distro, channel_dir) = distro_7_2();
    let mut notify = NotifySocket::new(sb.path());
    let mut d = sb.qusd_ready(&mut notify);
    let old_aarch64 = distro.join("qemu-aarch64-static").display().to_string();
    assert_eq!(interpreter_of(&sb, "qemu-aarch64"), old_aarch64);

    // A foreign program running all along: it loops until told to stop.
    let stop = sb.path().join("stop");
    let long = sb
        .command(busybox_arm64())
        .args([
            "sh",
            "-c",
            &format!(
                "n=0; while [ ! -e {} ]; do n=$((n + 1)); busybox usleep 20000; done; echo survived $n",
                stop.display()
            ),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start busybox");

    // Installed: the emulators first, then the drop-in (dpkg's order).
    lay_out(&new, &channel_dir, &["aarch64", "s390x"]);
    sb.write_config(
        "40-qemu-11.toml",
        &format!(
            "[qemu]\nsearch_path = [\"{}\", {{append = true}}]\n",
            channel_dir.display()
        ),
    );
    let new_aarch64 = channel_dir.join("qemu-aarch64").display().to_string();
    wait_for(30, "qemu-aarch64 on channel 11's emulator", || {
        interpreter_of(&sb, "qemu-aarch64") == new_aarch64
    });
    wait_for(30, "qemu-s390x on channel 11's emulator", || {
        interpreter_of(&sb, "qemu-s390x") == channel_dir.join("qemu-s390x").display().to_string()
    });
    let out = sb
        .command(busybox_arm64())
        .args(["sh", "-c", "echo qus | sha256sum"])
        .output()
        .expect("run busybox");
    assert!(
        stdout(&out).starts_with(&host_sha256("qus\n")),
        "{}",
        stderr(&out)
    );

    // Removed: the files go, then the drop-in.
    std::fs::remove_dir_all(&channel_dir).expect("remove the channel's emulators");
    wait_for(
        30,
        "qemu-aarch64 back on the distribution's emulator",
        || interpreter_of(&sb, "qemu-aarch64") == old_aarch64,
    );
    std::fs::remove_file(sb.etc().join("40-qemu-11.toml")).expect("remove the drop-in");
    wait_for(30, "qemu-s390x back on the distribution's emulator", || {
        interpreter_of(&sb, "qemu-s390x") == distro.join("qemu-s390x-static").display().to_string()
    });
    d.settle(&sb);
    assert_eq!(interpreter_of(&sb, "qemu-aarch64"), old_aarch64);

    std::fs::write(&stop, "").expect("stop");
    let out = long.wait_with_output().expect("busybox");
    assert!(
        out.status.success() && stdout(&out).starts_with("survived"),
        "the program started before the switch: {:?} {}",
        out.status,
        stdout(&out)
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(30), Some(0), "{}", d.log_text());
}
