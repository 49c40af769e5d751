//! Attacks by a real second user (host uid 1000, mapped one to one into
//! the test's user namespace) and hostile setups, against the real kernel
//! and the real binaries. Each test is the regression test of one hole.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{require_qemu, require_tool, stderr, wait_for, NotifySocket, Sandbox};

const WAIT: u64 = 15;
const USER: u32 = 1000;

fn chown(path: &Path, uid: u32) {
    let st = Command::new("chown")
        .arg("-h")
        .arg(format!("{uid}:{uid}"))
        .arg(path)
        .status()
        .expect("chown");
    assert!(st.success(), "chown {}", path.display());
}

/// A root process stuck while holding the lock: `flock` on a descriptor,
/// then `exec sleep`, so killing the one pid releases it (flock's command
/// form would leave its child behind, holding our output open).
fn hold_lock(sb: &Sandbox, lock: &Path) -> std::process::Child {
    sb.command("sh")
        .arg("-c")
        .arg(format!(
            "exec 9<>'{}'; flock -x 9; exec sleep 60",
            lock.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("root flock")
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A shell command run inside the sandbox as the second user.
fn as_user(sb: &Sandbox, script: &str) -> Command {
    require_tool("setpriv", "util-linux");
    let mut c = sb.command("setpriv");
    c.args([
        &format!("--reuid={USER}"),
        &format!("--regid={USER}"),
        "--clear-groups",
        "--",
        "sh",
        "-c",
        script,
    ]);
    c
}

/// The lock is the caller's, mode 0600: another user can neither take it
/// nor freeze qus with an old, readable lock file; and a lock held by a
/// stuck root process makes `qus register` give up with a clear message
/// instead of hanging.
#[test]
fn another_user_cannot_take_or_freeze_the_lock() {
    let sb = Sandbox::with_host_ids();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    // As systemd's RuntimeDirectory= makes it: 0755, and an old 0644 lock.
    chmod(&sb.state(), 0o755);
    let lock = sb.state().join("lock");
    fs::write(&lock, "").expect("old lock");
    chmod(&lock, 0o644);
    // The user holds the old lock file open and locked…
    let mut holder = as_user(
        &sb,
        &format!(
            "exec 9<'{}'; flock -x 9; echo held; exec sleep 60",
            lock.display()
        ),
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("user flock");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    assert_eq!(line.trim(), "held");
    // …and still qus goes ahead: the readable lock file was replaced.
    let out = sb.qus(&["register"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
    let _ = holder.kill();
    let _ = holder.wait();
    let meta = fs::symlink_metadata(&lock).expect("lock");
    assert_eq!(meta.mode() & 0o777, 0o600, "lock mode");
    // The new lock cannot even be opened by the user.
    let out = as_user(&sb, &format!("flock -n -x '{}' true", lock.display()))
        .output()
        .expect("flock");
    assert!(!out.status.success(), "the user took the lock");
    // A stuck root process holding it: qus waits a bounded time, then says so.
    let mut stuck = hold_lock(&sb, &lock);
    wait_for(WAIT, "root holds the lock", || {
        !sb.command("flock")
            .args(["-n"])
            .arg(&lock)
            .arg("true")
            .status()
            .expect("flock -n")
            .success()
    });
    let start = std::time::Instant::now();
    let out = sb.qus(&["register"]);
    let _ = stuck.kill();
    let _ = stuck.wait();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is held by another qus or qusd"),
        "{}",
        stderr(&out)
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
}

/// Where uid 65534 is a real user (`nobody`, mapped here one to one),
/// its emulator, its directory and its drop-in are not root's.
#[test]
fn nobody_is_not_root_where_it_is_a_real_user() {
    let sb = Sandbox::with_host_ids();
    let emu = sb.install_emulator("aarch64");
    chown(&emu, 65534);
    sb.search_bin("");
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is owned by uid 65534, not root"),
        "{}",
        stderr(&out)
    );
    assert!(sb.entries().is_empty());
    chown(&emu, 0);
    chown(&sb.bin(), 65534);
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("owned by uid 65534"),
        "{}",
        stderr(&out)
    );
    chown(&sb.bin(), 0);
    let drop_in = sb.write_config("50-nobody.toml", "[qemu]\nflags = \"POCF\"\n");
    chown(&drop_in, 65534);
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refused: owned by uid 65534"),
        "{}",
        stderr(&out)
    );
    assert!(sb.entries().is_empty());
}

/// A root-owned link to a link in a user's directory: every hop is
/// checked, so the user cannot re-point the middle of the chain.
#[test]
fn every_symlink_hop_is_checked() {
    let sb = Sandbox::with_host_ids();
    let user_dir = sb.path().join("user");
    fs::create_dir(&user_dir).expect("mkdir");
    chown(&user_dir, USER);
    let hop = user_dir.join("hop");
    std::os::unix::fs::symlink(require_qemu("aarch64"), &hop).expect("hop");
    // The hop itself is root's: only its directory is the user's.
    std::os::unix::fs::symlink(&hop, sb.bin().join("qemu-aarch64-static")).expect("link");
    sb.search_bin("");
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "directory {} is owned by uid {USER}",
            user_dir.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(sb.entries().is_empty());
    let status = sb.qus_ok(&["status"]);
    assert!(status.contains("refused"), "{status}");
}

/// A config directory others can write is refused (they could mask or
/// rename an administrator's drop-in); kubelet's ConfigMap layout with its
/// 0777 top directory still works, and a user's link planted there is
/// refused.
#[test]
fn config_dirs_others_can_write_are_refused_but_configmaps_work() {
    let sb = Sandbox::with_host_ids();
    sb.install_emulator("aarch64");
    sb.install_emulator("s390x");
    sb.search_bin("exclude = [\"s390x\"]\n");
    sb.qus_ok(&["register"]);
    chmod(&sb.etc(), 0o777);
    let out = as_user(
        &sb,
        &format!("ln -s /dev/null '{}/10-base.toml.mask'", sb.etc().display()),
    )
    .status()
    .expect("ln");
    assert!(out.success());
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refused config directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.entries(), ["qemu-aarch64"], "nothing changed");
    chmod(&sb.etc(), 0o755);

    // kubelet's layout, exact modes: top dir 0777, the rest root's 0755.
    let cm = sb.path().join("configmap");
    fs::create_dir(&cm).expect("mkdir");
    chmod(&cm, 0o777);
    let version = cm.join("..2026_11_27_00_00_00.1");
    fs::create_dir(&version).expect("mkdir");
    fs::write(
        version.join("qus.toml"),
        format!(
            "[qemu]\nsearch_path = [\"{}\"]\nexclude = []\n[qemu.arch.aarch64]\nenabled = false\n",
            sb.bin().display()
        ),
    )
    .expect("write");
    std::os::unix::fs::symlink("..2026_11_27_00_00_00.1", cm.join("..data")).expect("..data");
    std::os::unix::fs::symlink("..data/qus.toml", cm.join("qus.toml")).expect("link");
    let run = |args: &[&str]| {
        sb.tool(common::QUS)
            .args(["--config-dir"])
            .arg(&cm)
            .args(args)
            .output()
            .expect("qus")
    };
    let out = run(&["register"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.entries(), ["qemu-s390x"], "the ConfigMap applied");
    // The user plants a mask in the world-writable ConfigMap dir.
    let st = as_user(&sb, &format!("ln -s /dev/null '{}/zz.toml'", cm.display()))
        .status()
        .expect("ln");
    assert!(st.success());
    let out = run(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("zz.toml: refused: not a link owned by root"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.entries(), ["qemu-s390x"], "nothing changed");
}

/// A state dir that is another user's is refused (its records decide
/// what qus removes); one qus creates is 0700 with 0600 files whatever
/// the umask.
#[test]
fn state_dir_is_private_and_never_anyone_elses() {
    let sb = Sandbox::with_host_ids();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    chown(&sb.state(), USER);
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("is owned by uid {USER}, not by the caller")),
        "{}",
        stderr(&out)
    );
    assert!(sb.entries().is_empty());
    // A forged record in it is ignored by status too.
    let fresh = sb.path().join("fresh-state");
    let st = sb
        .command("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec '{}' --binfmt-misc '{}' --state-dir '{}' --config-dir '{}' --host-arch x86_64 register",
            common::QUS,
            sb.binfmt().display(),
            fresh.display(),
            sb.etc().display()
        ))
        .status()
        .expect("qus");
    assert!(st.success());
    assert_eq!(fs::metadata(&fresh).expect("dir").mode() & 0o777, 0o700);
    for f in ["owned.json", "lock"] {
        let m = fs::symlink_metadata(fresh.join(f)).expect(f).mode() & 0o777;
        assert_eq!(m, 0o600, "{f} mode {m:o}");
    }
}

/// Every state file is reached through a descriptor of the checked state
/// dir (`openat`, `renameat`, `unlinkat` relative to it), never by a path
/// under it: a path swapped after the check (a rename, `RENAME_EXCHANGE`
/// in a loop) then changes nothing. strace shows every file system call of
/// a takeover and of putting it back.
#[test]
fn state_files_are_reached_only_through_the_checked_directory() {
    require_tool("strace", "strace");
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("takeover = true\n");
    sb.register_raw(
        ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00::/bin/true:",
    );
    let state = sb.state().display().to_string();
    for (i, args) in [&["register"][..], &["status"], &["unregister", "--all"]]
        .into_iter()
        .enumerate()
    {
        let trace = sb.path().join(format!("trace-{i}"));
        let trace_arg = trace.display().to_string();
        let out = sb
            .tool_under(
                &[
                    "strace",
                    "-f",
                    "-qq",
                    "-e",
                    "trace=%file,%desc",
                    "-o",
                    &trace_arg,
                ],
                &common::qus_bin(),
                "x86_64",
            )
            .args(args)
            .output()
            .expect("strace qus");
        assert_eq!(out.status.code(), Some(0), "qus {args:?}: {}", stderr(&out));
        let text = fs::read_to_string(&trace).expect("trace");
        let by_path: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(&format!("\"{state}/")))
            .collect();
        assert!(
            by_path.is_empty(),
            "qus {args:?} reached state files by path:\n{}",
            by_path.join("\n")
        );
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("\"{state}\"")) && l.contains("O_DIRECTORY")),
            "qus {args:?} never opened the state dir:\n{text}"
        );
    }
    // Not vacuous: the records were written and read relative to it.
    let all: String = (0..3)
        .map(|i| fs::read_to_string(sb.path().join(format!("trace-{i}"))).expect("trace"))
        .collect();
    assert!(
        all.contains("\"owned.json\""),
        "no owned.json in the traces"
    );
    assert_eq!(
        sb.entry("qemu-aarch64").map(|e| e.contains("/bin/true")),
        Some(true),
        "their entry is back"
    );
}

/// Names from the system (drop-in file names here) are shown escaped in
/// `qus config`, in errors and in qusd's log: a newline cannot forge a
/// line, an ESC cannot drive the terminal, a right-to-left override cannot
/// make a name read as another.
#[test]
fn names_from_the_system_are_escaped_in_config_errors_and_the_log() {
    let sb = Sandbox::new();
    sb.search_bin("");
    let raw = |text: &str| text.contains('\x1b') || text.contains('\u{202e}');
    sb.write_config(
        "15-a\n\x1b[31m\u{202e}x.toml",
        "[qemu]\nexclude = [\"s390x\"]\n",
    );
    let config = sb.qus_ok(&["config"]);
    assert!(
        !raw(&config),
        "raw control characters in qus config:\n{config}"
    );
    assert!(
        config.contains("15-a\\x0a\\x1b[31m\\xe2\\x80\\xaex.toml"),
        "{config}"
    );
    let bad = sb.write_config("20-b\x1b[2Jy.toml", "[qemu]\nbogus = 1\n");
    let out = sb.qus(&["register"]);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(!raw(&err), "raw control characters in an error: {err:?}");
    assert!(err.contains("20-b\\x1b[2Jy.toml:2"), "{err}");
    fs::remove_file(&bad).expect("rm");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    sb.write_config(
        "30-c\nINFO registered forged\x1b.toml",
        "[qemu]\nbogus = 1\n",
    );
    wait_for(WAIT, "qusd to reject the drop-in", || {
        d.count("configuration rejected") >= 1
    });
    let log = d.log_text();
    assert!(!raw(&log), "raw control characters in qusd's log");
    assert!(
        !log.lines().any(|l| l.starts_with("INFO registered forged")),
        "a forged log line:\n{log}"
    );
    assert!(
        log.contains("30-c\\x0aINFO registered forged\\x1b.toml:2"),
        "{log}"
    );
}

/// A state dir made writable by others while qusd runs: its records are
/// refused (anyone could forge them), but qusd goes on repairing what it
/// registered itself, from its own records, writing nothing there; once
/// the mode is fixed it keeps its records there again.
#[test]
fn a_state_dir_made_0777_stops_no_repair() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    assert!(sb.has_entry("qemu-aarch64"));
    let records = sb.state().join("owned.json");
    let before = fs::read_to_string(&records).expect("records");
    fs::set_permissions(sb.state(), fs::Permissions::from_mode(0o777)).expect("chmod 0777");
    sb.write_inside(&sb.binfmt().join("qemu-aarch64"), "-1");
    wait_for(
        20,
        "qemu-aarch64 repaired while the state dir is 0777",
        || sb.has_entry("qemu-aarch64"),
    );
    assert!(
        d.count("repairing what this qusd registered from its own records") >= 1,
        "{}",
        d.log_text()
    );
    assert_eq!(
        fs::read_to_string(&records).expect("records"),
        before,
        "wrote into a refused state dir"
    );
    // qusd looks again every second meanwhile: let it, twice.
    wait_for(20, "two more passes while the state dir is refused", || {
        d.count("looking again in 1s") >= 2
    });
    fs::set_permissions(sb.state(), fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    wait_for(20, "qusd to take the fixed state dir up again", || {
        d.count("state dir trusted again") >= 1
    });
    // Back to normal: a removal is repaired and recorded as before.
    sb.write_inside(&sb.binfmt().join("qemu-aarch64"), "-1");
    wait_for(20, "qemu-aarch64 repaired", || sb.has_entry("qemu-aarch64"));
    assert!(fs::read_to_string(&records)
        .expect("records")
        .contains("qemu-aarch64"));
    // Said when it began, not on each of the passes a second apart.
    assert_eq!(
        d.count("repairing what this qusd registered from its own records"),
        1,
        "{}",
        d.log_text()
    );
}

/// A read-only state dir: qus registers anyway, without records, and
/// says so; qusd starts and says so in STATUS=.
#[test]
fn read_only_state_dir_keeps_working() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    let st = sb
        .command("sh")
        .arg("-c")
        .arg(format!(
            "mount --bind '{0}' '{0}' && mount -o remount,bind,ro '{0}'",
            sb.state().display()
        ))
        .status()
        .expect("mount");
    assert!(st.success());
    let out = sb.qus(&["register"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("working without ownership records"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
    let mut n = NotifySocket::new(sb.path());
    let _d = sb.qusd_ready(&mut n);
    assert!(
        n.seen.iter().any(|m| m.contains("state dir read-only")),
        "{:?}",
        n.seen
    );
    // Exclusion does not depend on writing a lock file: a second qusd on
    // the same read-only state dir exits at once.
    let mut second = sb.qusd(None, &[]);
    assert_eq!(second.wait_exit(WAIT), Some(1), "{}", second.log_text());
    assert!(
        second
            .log_text()
            .contains("is already running on state dir"),
        "{}",
        second.log_text()
    );
}

/// An emulator installed with O_TMPFILE + linkat (CREATE under its
/// name, CLOSE_WRITE under `#ino`) is registered, not held forever.
#[test]
fn emulator_linked_in_from_o_tmpfile_is_registered() {
    let sb = Sandbox::new();
    sb.search_bin("");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    drop(common::link_in_from_tmpfile(
        &sb.bin(),
        "qemu-aarch64-static",
        &fs::read(require_qemu("aarch64")).expect("read"),
    ));
    wait_for(WAIT, "the linked-in emulator registered", || {
        sb.has_entry("qemu-aarch64")
    });
    assert_eq!(d.count("waiting for qemu-aarch64"), 0, "{}", d.log_text());
}

/// A stream of events (writing 1 to `status` every 50 ms) cannot
/// postpone a repair: the debounce has a maximum.
#[test]
fn a_stream_of_events_cannot_postpone_a_repair() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    let mut n = NotifySocket::new(sb.path());
    let _d = sb.qusd_ready(&mut n);
    let status = sb.binfmt_outside().join("status");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = fs::write(&status, "1");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    fs::write(sb.binfmt_outside().join("qemu-aarch64"), "-1").expect("remove");
    // The writer runs for the whole wait: only the maximum wait lets it through.
    wait_for(WAIT, "restored while events keep coming", || {
        sb.has_entry("qemu-aarch64")
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().expect("writer");
}

/// Whitespace the kernel's read-back would trim is refused up front,
/// and two qusd with different configurations fighting over one entry
/// both give up after a few rounds instead of looping forever.
#[test]
fn read_back_mismatches_and_fights_are_bounded() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin(&format!(
        "[qemu.arch.aarch64]\ninterpreter = \"{}/qemu-aarch64-static \"\n",
        sb.bin().display()
    ));
    let out = sb.qus(&["config", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("starts or ends with whitespace"),
        "{}",
        stderr(&out)
    );
    // Two daemons, two state dirs, two opinions on qemu-aarch64's flags,
    // and both told to take over whatever they find (takeover = true).
    sb.search_bin("takeover = true\n");
    let other_etc = sb.path().join("etc-other");
    let other_state = sb.path().join("state-other");
    fs::create_dir(&other_etc).expect("mkdir");
    fs::write(
        other_etc.join("10.toml"),
        format!(
            "[qemu]\nsearch_path = [\"{}\"]\nflags = \"F\"\ntakeover = true\n",
            sb.bin().display()
        ),
    )
    .expect("write");
    let mut n = NotifySocket::new(sb.path());
    let a = sb.qusd_ready(&mut n);
    let log_b = sb.path().join("qusd-other.log");
    let b = sb
        .command(common::QUSD)
        .arg("--binfmt-misc")
        .arg(sb.binfmt())
        .arg("--state-dir")
        .arg(&other_state)
        .arg("--config-dir")
        .arg(&other_etc)
        .args(["--host-arch", "x86_64", "--log-level", "debug"])
        .env_remove("NOTIFY_SOCKET")
        .stderr(fs::File::create(&log_b).expect("log"))
        .spawn()
        .expect("qusd b");
    // Killed on drop, whatever happens below.
    let b = common::Qusd {
        child: b,
        log: log_b.clone(),
    };
    let gave_up = |text: &str| text.contains("gave up on qemu-aarch64");
    wait_for(60, "one of the two gives up", || {
        gave_up(&a.log_text()) || gave_up(&fs::read_to_string(&log_b).unwrap_or_default())
    });
    // The fight is over: qusd A goes quiet (a loop never would).
    a.settle(&sb);
    drop(b);
    if gave_up(&a.log_text()) {
        let status = n.wait(WAIT, "STATUS with the give-up", |m| gave_up(m));
        assert!(status.contains("STATUS="), "{status}");
    }
}

/// An entry that would catch the host's own programs (x86_64 on an
/// x86_64 host) is refused with the reason; native programs keep running.
#[test]
fn host_breaking_entries_are_refused() {
    let sb = Sandbox::new();
    sb.install_emulator("x86_64");
    sb.search_bin("[qemu.arch.x86_64]\nenabled = true\n");
    let out = sb.qus(&["register"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("would catch the host's own programs")
            || stderr(&out).contains("would catch its own interpreter"),
        "{}",
        stderr(&out)
    );
    assert!(sb.entries().is_empty());
    let st = sb.command("true").status().expect("true");
    assert!(st.success());
    // The override lets through an entry meant to catch host programs
    // (state missing: wanted), never one that catches its own interpreter.
    let wrapper = sb.bin().join("wrap");
    fs::write(&wrapper, "#!/bin/sh\nexec \"$@\"\n").expect("wrapper");
    chmod(&wrapper, 0o755);
    sb.search_bin(&format!(
        "[qemu.arch.x86_64]\nenabled = true\ncatch_host_programs = true\n\
         [entry.wrap-elf]\nmagic = \"\\\\x7fELF\\\\x02\"\ninterpreter = \"{}\"\n\
         catch_host_programs = true\n",
        wrapper.display()
    ));
    let status = sb.status();
    let state = |name: &str| {
        status["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| (e["state"].to_string(), e["detail"].to_string()))
            .expect("entry")
    };
    assert_eq!(state("wrap-elf").0, "\"missing\"", "{status}");
    let (st, detail) = state("qemu-x86_64");
    assert_eq!(st, "\"refused\"");
    assert!(detail.contains("its own interpreter"), "{detail}");
}

/// One qusd per state dir; `status --daemon` does not trust a pid
/// that now belongs to another process.
#[test]
fn a_second_qusd_on_one_state_dir_exits_at_once() {
    let sb = Sandbox::new();
    sb.search_bin("");
    let mut n = NotifySocket::new(sb.path());
    let a = sb.qusd_ready(&mut n);
    let mut b = sb.qusd(None, &[]);
    let code = b.wait_exit(WAIT);
    assert_eq!(code, Some(1));
    assert!(
        b.log_text().contains(&format!(
            "another qusd (pid {}) is already running",
            a.pid()
        )),
        "{}",
        b.log_text()
    );
    assert!(
        b.log_text().contains("; stop it first") && !b.log_text().contains("   stop"),
        "one sentence, no stray spaces: {}",
        b.log_text()
    );
    let out = sb.qus(&["status", "--daemon"]);
    assert!(out.status.success(), "the first one still serves");
    drop(a);
    // A stale file naming a live process that is not that qusd.
    let me = std::process::id();
    fs::write(
        sb.state().join("qusd.json"),
        format!("{{\"pid\":{me},\"start_time\":1,\"ready\":true,\"status\":\"x\"}}"),
    )
    .expect("write");
    let out = sb.qus(&["status", "--daemon"]);
    assert_eq!(out.status.code(), Some(1), "trusted a reused pid");
}

/// binfmt_misc is never mounted over a directory with files in it.
#[test]
fn binfmt_misc_is_mounted_only_on_an_empty_directory() {
    let sb = Sandbox::unmounted();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    let dir = sb.path().join("data");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join("data.txt"), "precious").expect("write");
    let out = sb
        .command(common::QUS)
        .arg("--binfmt-misc")
        .arg(&dir)
        .arg("--state-dir")
        .arg(sb.state())
        .arg("--config-dir")
        .arg(sb.etc())
        .arg("register")
        .output()
        .expect("qus");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    let seen = sb
        .command("cat")
        .arg(dir.join("data.txt"))
        .output()
        .expect("cat");
    assert_eq!(String::from_utf8_lossy(&seen.stdout), "precious");
}

/// `qus export --output` never writes through a link planted there.
#[test]
fn export_never_follows_a_planted_link() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    let victim = sb.path().join("victim");
    fs::write(&victim, "secret").expect("victim");
    chmod(&victim, 0o600);
    let out_dir = sb.path().join("export");
    fs::create_dir(&out_dir).expect("mkdir");
    std::os::unix::fs::symlink(&victim, out_dir.join("qemu-aarch64.conf")).expect("plant");
    sb.qus_ok(&["export", "--output", &out_dir.display().to_string()]);
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "secret");
    let written = out_dir.join("qemu-aarch64.conf");
    assert!(fs::symlink_metadata(&written).expect("conf").is_file());
    assert!(fs::read_to_string(&written)
        .expect("conf")
        .contains(":qemu-aarch64:M:"));
}

/// A config directory that vanishes while qusd runs keeps the previous
/// configuration (no defaults applied at once) until it is back.
#[test]
fn a_vanished_config_dir_keeps_the_configuration() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.install_emulator("s390x");
    sb.search_bin("exclude = [\"s390x\"]\n");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
    let moved = sb.path().join("etc-away");
    fs::rename(sb.etc(), &moved).expect("mv etc away");
    wait_for(WAIT, "the vanished dir noticed", || {
        d.count("vanished") >= 1
    });
    assert_eq!(sb.entries(), ["qemu-aarch64"], "defaults applied");
    fs::rename(&moved, sb.etc()).expect("mv back");
    wait_for(WAIT, "configuration valid again", || {
        d.count("configuration is valid again") >= 1
    });
    d.settle(&sb);
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
}

/// A drop-in starting with a BOM says so; bidirectional overrides in a
/// foreign entry are shown escaped.
#[test]
fn bom_and_bidi_are_named_and_escaped() {
    let sb = Sandbox::new();
    sb.search_bin("");
    let bom = sb.etc().join("20-bom.toml");
    fs::write(&bom, b"\xef\xbb\xbf[qemu]\nflags = \"PF\"\n").expect("write");
    chmod(&bom, 0o644);
    let out = sb.qus(&["config", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("BOM"), "{}", stderr(&out));
    fs::remove_file(&bom).expect("rm");
    sb.install_emulator("aarch64");
    sb.search_bin("takeover = false\n");
    // Another tool's entry under qus's name: shown as a conflict, with
    // its interpreter in the detail.
    sb.register_raw(":qemu-aarch64:E::evil::/usr/bin/x\u{202e}gpj.exe:");
    let table = sb.qus_ok(&["status"]);
    assert!(!table.contains('\u{202e}'), "{table}");
    assert!(table.contains("\\xe2\\x80\\xae"), "{table}");
}

/// The middle hop of a link chain re-pointed while qusd runs: qusd
/// watches every hop's directory, so the change is seen and, with `F`,
/// the entry is replaced by what the chain names now.
#[test]
fn a_re_pointed_middle_hop_is_noticed() {
    let sb = Sandbox::new();
    let hops = sb.path().join("hops");
    fs::create_dir(&hops).expect("mkdir");
    for name in ["a", "b"] {
        fs::copy(require_qemu("aarch64"), hops.join(name)).expect("copy");
        chmod(&hops.join(name), 0o755);
    }
    std::os::unix::fs::symlink("a", hops.join("hop")).expect("hop");
    std::os::unix::fs::symlink(hops.join("hop"), sb.bin().join("qemu-aarch64-static"))
        .expect("link");
    sb.search_bin("");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    assert!(sb.has_entry("qemu-aarch64"));
    std::os::unix::fs::symlink("b", hops.join("hop.new")).expect("new hop");
    fs::rename(hops.join("hop.new"), hops.join("hop")).expect("re-point");
    wait_for(WAIT, "the entry replaced after the hop moved", || {
        d.count("replaced qemu-aarch64") == 1
    });
}

/// A lock held by a stuck process never stops qusd's loop: watchdog pings
/// keep coming while its first pass waits, and SIGTERM stops it at once.
#[test]
fn a_held_lock_never_blocks_the_daemon_loop() {
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    sb.qus_ok(&["register"]);
    let lock = sb.state().join("lock");
    let mut stuck = hold_lock(&sb, &lock);
    wait_for(WAIT, "the lock held", || {
        !sb.command("flock")
            .arg("-n")
            .arg(&lock)
            .arg("true")
            .status()
            .expect("flock -n")
            .success()
    });
    let mut n = NotifySocket::new(sb.path());
    let mut d = sb.qusd(Some(&n), &[("WATCHDOG_USEC", "1000000")]);
    for _ in 0..3 {
        n.wait(5, "WATCHDOG=1 while the pass waits for the lock", |m| {
            m.contains("WATCHDOG=1")
        });
    }
    assert!(
        !n.seen.iter().any(|m| m.contains("READY=1")),
        "the first pass cannot have finished: {:?}",
        n.seen
    );
    let start = std::time::Instant::now();
    d.signal("TERM");
    assert_eq!(d.wait_exit(WAIT), Some(0), "{}", d.log_text());
    let took = start.elapsed();
    let _ = stuck.kill();
    let _ = stuck.wait();
    assert!(
        took < std::time::Duration::from_secs(1),
        "SIGTERM took {took:?} while the lock was held"
    );
}

/// A config directory reached through a symlink: every component after the
/// link is checked too (a user's directory further down is refused), and
/// a root-owned link to a good directory is fine.
#[test]
fn config_dir_paths_are_checked_past_every_link() {
    let sb = Sandbox::with_host_ids();
    sb.install_emulator("aarch64");
    let real = sb.path().join("real");
    let team = real.join("team");
    let qusd_dir = team.join("qus.d");
    fs::create_dir_all(&qusd_dir).expect("mkdir");
    chown(&team, USER);
    let link = sb.path().join("link");
    std::os::unix::fs::symlink(&real, &link).expect("link");
    fs::write(
        qusd_dir.join("10.toml"),
        format!("[qemu]\nsearch_path = [\"{}\"]\n", sb.bin().display()),
    )
    .expect("write");
    let via_link = link.join("team/qus.d");
    let run = |dir: &Path| {
        sb.command(common::QUS)
            .arg("--binfmt-misc")
            .arg(sb.binfmt())
            .arg("--state-dir")
            .arg(sb.state())
            .arg("--config-dir")
            .arg(dir)
            .args(["--host-arch", "x86_64", "register"])
            .output()
            .expect("qus")
    };
    let out = run(&via_link);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "directory {} is owned by uid {USER}",
            team.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(sb.entries().is_empty());
    // A root-owned link straight to a good directory.
    chown(&team, 0);
    let good = sb.path().join("good-link");
    std::os::unix::fs::symlink(&qusd_dir, &good).expect("link");
    let out = run(&good);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
}

/// `qus test`'s setuid probe is a setuid-root aarch64 program: under `C`,
/// whoever runs it runs foreign code as root with their own environment
/// (`QEMU_LOG_FILENAME`, `QEMU_GDB`, …). A second user watching `$TMPDIR`
/// for it, and running it the moment it appears, must never get to: the
/// program lives on a tmpfs in a mount namespace of the probe's own, and
/// all the host shows is an empty directory only root may enter. The
/// watcher proves it watched during a probe (it saw that directory);
/// each run proves the probe really ran as root under `C`.
#[test]
fn no_other_user_can_run_qus_tests_setuid_probe() {
    let sb = Sandbox::with_host_ids();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    sb.qus_ok(&["register", "--flags", "PFC", "aarch64"]);
    let shared = tempfile::Builder::new()
        .prefix("qus-shared-tmp-")
        .tempdir_in("/tmp")
        .expect("shared tmp");
    let t = shared.path();
    chmod(t, 0o1777);
    let watch = format!(
        "T='{}'; while [ ! -e \"$T/stop\" ]; do for d in \"$T\"/qus-setuid-*; do \
         [ -d \"$d\" ] && : > \"$T/saw\"; \
         for f in \"$d\"/*; do [ -f \"$f\" ] && \"$f\" > \"$T/ran\" 2>&1; done; \
         [ -x \"$d/setuid-aarch64\" ] && \"$d/setuid-aarch64\" >> \"$T/ran\" 2>&1; \
         done; done",
        t.display()
    );
    let mut watcher = as_user(&sb, &watch)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("watcher");
    let mut runs = 0;
    while !t.join("saw").exists() {
        runs += 1;
        assert!(
            runs <= 50,
            "the watcher never saw a probe directory in 50 runs of `qus test`"
        );
        let out = sb
            .tool(&common::qus_bin())
            .env("TMPDIR", t)
            .args(["test", "aarch64", "--json"])
            .output()
            .expect("qus test");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(r["setuid"]["result"], "works", "{r:#}");
    }
    fs::write(t.join("stop"), "").expect("stop");
    let _ = watcher.wait();
    let ran = fs::read_to_string(t.join("ran")).unwrap_or_default();
    assert!(
        !t.join("ran").exists(),
        "uid {USER} ran qus's setuid probe (after {runs} runs): {ran:?}"
    );
    let left: Vec<_> = fs::read_dir(t)
        .expect("shared tmp")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("qus-setuid-"))
        .collect();
    assert!(left.is_empty(), "probe directories left behind: {left:?}");
}

/// A state dir whose parent another user may write is refused: that user
/// could swap the state dir (`renameat2(RENAME_EXCHANGE)`) for one holding
/// forged records, which decide what qus removes. Nothing is written
/// there: no lock, no records, no temporary file; a root-owned parent
/// works.
#[test]
fn a_state_dir_under_another_users_directory_is_refused() {
    let sb = Sandbox::with_host_ids();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    let parent = sb.path().join("users-dir");
    fs::create_dir(&parent).expect("parent");
    chown(&parent, USER);
    chmod(&parent, 0o755);
    // The user's directory must be reachable for the attack to matter.
    chmod(sb.path(), 0o755);
    let state = parent.join("state");
    fs::create_dir(&state).expect("state");
    chmod(&state, 0o700);
    let run = |args: &[&str]| {
        sb.command(common::qus_bin())
            .args(["--binfmt-misc", &sb.binfmt().display().to_string()])
            .args(["--state-dir", &state.display().to_string()])
            .args(["--config-dir", &sb.etc().display().to_string()])
            .args(["--host-arch", "x86_64"])
            .args(args)
            .output()
            .expect("qus")
    };
    let out = run(&["register"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{} (above state dir", parent.display()))
            && err.contains(&format!("owned by uid {USER}")),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(&state)
        .expect("state")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "root wrote into it: {left:?}");
    assert!(sb.entries().is_empty(), "registered with untrusted records");
    // A state dir to be made there (`--state-dir /home/u/x/state` as
    // root): refused before anything is created in the user's directory.
    let fresh = parent.join("fresh").join("state");
    let out = sb
        .command(common::qus_bin())
        .args(["--binfmt-misc", &sb.binfmt().display().to_string()])
        .args(["--state-dir", &fresh.display().to_string()])
        .args(["--config-dir", &sb.etc().display().to_string()])
        .args(["--host-arch", "x86_64"])
        .arg("register")
        .output()
        .expect("qus");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("owned by uid {USER}")),
        "{}",
        stderr(&out)
    );
    assert!(
        !parent.join("fresh").exists(),
        "root made a directory in the user's"
    );
    // The same layout with the parent root's again: works.
    chown(&parent, 0);
    let out = run(&["register"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.entries(), ["qemu-aarch64"]);
}

/// A FIFO named like an emulator (or a drop-in) blocks nobody: qus
/// never opens a file it has not seen is a regular one without
/// `O_NONBLOCK`, so qusd keeps repairing, and `qus status` answers (the
/// emulator-named FIFO refused as "not a regular file", the drop-in one
/// skipped) instead of hanging in `open`.
#[test]
fn a_fifo_named_like_an_emulator_or_a_drop_in_freezes_nothing() {
    require_tool("mkfifo", "coreutils");
    let sb = Sandbox::new();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    let mut n = NotifySocket::new(sb.path());
    let _d = sb.qusd_ready(&mut n);
    for fifo in [
        sb.bin().join("qemu-sparc-static"),
        sb.etc().join("60-fifo.toml"),
    ] {
        let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(st.success(), "mkfifo {}", fifo.display());
    }
    sb.write_config("70-touch.toml", "");
    sb.write_inside(&sb.binfmt().join("qemu-aarch64"), "-1");
    wait_for(WAIT, "qusd repaired the entry despite the FIFOs", || {
        sb.has_entry("qemu-aarch64")
    });
    let out = common::output_within(
        sb.tool(&common::qus_bin()).args(["status", "--json"]),
        WAIT,
        "qus status on a FIFO",
    );
    // (The FIFO drop-in is skipped like any file that is not a regular
    // one; the emulator-named FIFO is refused with the reason.)
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let sparc = status["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["arch"] == "sparc")
        .cloned()
        .expect("a sparc row");
    assert_eq!(sparc["state"], "refused", "{sparc}");
    assert!(
        sparc["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not a regular file")),
        "{sparc}"
    );
}

/// An emulator whose `--version` exits but leaves a background child
/// holding stdout hangs nothing: `qus status -v` answers (children run in
/// a process group of their own, killed with them, and reads have a
/// deadline), and the background child is gone with its group.
#[test]
fn a_version_child_left_holding_stdout_hangs_nothing() {
    require_tool("pgrep", "procps");
    let sb = Sandbox::new();
    sb.search_bin("allow_dynamic = true\n");
    let fake = sb.bin().join("qemu-riscv64-static");
    fs::write(
        &fake,
        "#!/bin/sh\nsleep 1000 &\necho 'qemu-riscv64 version 9.9.9'\n",
    )
    .expect("fake emulator");
    chmod(&fake, 0o755);
    sb.qus_ok(&["register", "riscv64"]);
    let out = common::output_within(
        sb.tool(&common::qus_bin()).args(["status", "-v"]),
        WAIT,
        "qus status -v on a --version child holding stdout",
    );
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    // 9.9.9 predates fchmodat2: the version shows with its known failure.
    assert!(
        table.contains("[QEMU 9.9.9; known: no fchmodat2"),
        "{table}"
    );
    let left = Command::new("pgrep")
        .args(["-f", "^sleep 1000$"])
        .output()
        .expect("pgrep");
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "the background child outlived its group"
    );
}

/// What qus took over goes back only through the same safety rules as a
/// registration: once a second user can write the directory of the
/// replaced entry's interpreter, `qus unregister` keeps qus's entry and
/// the record and says why (exit 1), instead of handing the name to a
/// file that user may have swapped; fixed, the entry goes back byte for
/// byte.
#[test]
fn restores_pass_the_safety_rules_too() {
    let sb = Sandbox::with_host_ids();
    sb.install_emulator("aarch64");
    sb.search_bin("takeover = true\n");
    let theirs = sb.path().join("theirs");
    fs::create_dir(&theirs).expect("their dir");
    chmod(sb.path(), 0o755);
    let their_emu = theirs.join("qemu-aarch64-static");
    fs::copy(require_qemu("aarch64"), &their_emu).expect("copy");
    sb.register_raw(&format!(
        ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00::{}:F",
        their_emu.display()
    ));
    let before = sb.entry("qemu-aarch64").expect("their entry");
    sb.qus_ok(&["register"]);
    assert_ne!(
        sb.entry("qemu-aarch64").as_deref(),
        Some(before.as_str()),
        "taken over"
    );
    let ours = sb.entry("qemu-aarch64").expect("ours");
    // The second user may now write where their interpreter lives.
    chown(&theirs, USER);
    let out = sb.qus(&["unregister", "--all"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("qemu-aarch64 not removed") && err.contains("fails the safety rules"),
        "{err}"
    );
    assert_eq!(
        sb.entry("qemu-aarch64").as_deref(),
        Some(ours.as_str()),
        "ours kept"
    );
    // Fixed: it goes back as it was.
    chown(&theirs, 0);
    sb.qus_ok(&["unregister", "--all"]);
    assert_eq!(sb.entry("qemu-aarch64").as_deref(), Some(before.as_str()));
}

/// Only programs the host runs are registered as emulators: an empty file,
/// a text file and another arch's program named like emulators were each
/// registered PF and shown as `registered` (safety round four, point 8);
/// now each is refused, with the reason in `qus status`, and nothing is
/// written for them. The real emulator beside them still registers.
#[test]
fn files_named_like_emulators_that_are_not_host_programs_are_refused() {
    let sb = Sandbox::new();
    sb.install_emulator("riscv64");
    let plant = |name: &str, bytes: &[u8]| {
        let p = sb.bin().join(name);
        fs::write(&p, bytes).expect("plant");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    plant("qemu-aarch64-static", b"");
    plant("qemu-arm-static", b"this is a text file, not an emulator\n");
    // A real aarch64 program (the aarch64 probe) named like the s390x emulator.
    let aarch64_program = fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/probes/bin/aarch64"))
        .expect("aarch64 probe");
    plant("qemu-s390x-static", &aarch64_program);
    sb.search_bin("");
    let out = sb.qus(&["register", "aarch64", "arm", "s390x", "riscv64"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "refusals fail register: {}",
        stderr(&out)
    );
    assert_eq!(
        sb.entries(),
        vec!["qemu-riscv64".to_string()],
        "only the real emulator is registered"
    );
    let status = sb.status();
    let detail = |name: &str| {
        let e = status["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} in status"))
            .clone();
        (
            e["state"].as_str().unwrap_or("").to_string(),
            e["detail"].as_str().unwrap_or("").to_string(),
        )
    };
    let (state, why) = detail("qemu-aarch64");
    assert_eq!(state, "refused");
    assert!(why.contains("is empty"), "{why}");
    let (state, why) = detail("qemu-arm");
    assert_eq!(state, "refused");
    assert!(why.contains("neither ELF nor a #! script"), "{why}");
    let (state, why) = detail("qemu-s390x");
    assert_eq!(state, "refused");
    assert!(
        why.contains("a program for aarch64, not for this host"),
        "{why}"
    );
    assert_eq!(detail("qemu-riscv64").0, "registered");
    let out = sb.run_program(
        "probe-riscv64",
        &fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/probes/bin/riscv64")).expect("probe"),
    );
    assert_eq!(common::stdout(&out), "qus-probe riscv64\n");
}

/// Safety round four, point 10: binfmt_misc as a way to root. An entry
/// (another tool's or qus's) whose interpreter a user can replace runs
/// that user's code for every matching program, and with C every matching
/// setuid program as root. `qus status` marks it, `--check` fails on it,
/// and qusd says it once when it appears. The interpreters here belong to
/// a real second user (uid 65533, mapped one to one) or are writable by
/// everyone.
#[test]
fn entries_whose_interpreter_a_user_could_replace_are_marked() {
    let sb = Sandbox::with_host_ids();
    sb.install_emulator("aarch64");
    sb.search_bin("");
    let mut n = NotifySocket::new(sb.path());
    let d = sb.qusd_ready(&mut n);
    assert_eq!(sb.qus(&["status", "--check"]).status.code(), Some(0));
    let users = sb.path().join("users");
    fs::create_dir(&users).expect("mkdir");
    let theirs = users.join("interp");
    fs::copy("/bin/true", &theirs).expect("copy");
    chown(&theirs, 65533);
    sb.register_raw(&format!(":userland:E::qusuland::{}:C", theirs.display()));
    let open = users.join("open-interp");
    fs::copy("/bin/true", &open).expect("copy");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
    sb.register_raw(&format!(":openland:E::qusoland::{}:", open.display()));
    wait_for(WAIT, "qusd to say it", || {
        d.count("userland: its interpreter could be replaced") == 1
            && d.count("openland: its interpreter could be replaced") == 1
    });
    let status = sb.status();
    let row = |name: &str| {
        status["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} in status"))["unsafe_interpreter"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let why = row("userland");
    assert!(
        why.contains("with C") && why.contains("owned by uid 65533"),
        "{why}"
    );
    assert!(row("openland").contains("writable by group or others"));
    assert_eq!(row("qemu-aarch64"), "", "qus's own is fine");
    let check = sb.qus(&["status", "--check"]);
    assert_eq!(check.status.code(), Some(1));
    let text = sb.qus_ok(&["status"]);
    assert!(text.contains("UNSAFE INTERPRETER"), "{text}");
    // Once: another pass (a SIGHUP) does not say it again.
    d.signal("HUP");
    d.settle(&sb);
    assert_eq!(
        d.count("userland: its interpreter could be replaced"),
        1,
        "{}",
        d.log_text()
    );
}

/// Safety round four, point 9: `qus which` on a FIFO hung until someone
/// wrote to it; it now refuses anything but a regular file at once.
#[test]
fn qus_which_refuses_a_fifo_at_once() {
    let sb = Sandbox::new();
    let fifo = sb.path().join("fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success());
    let out = common::output_within(
        sb.command(common::qus_bin()).arg("which").arg(&fifo),
        20,
        "qus which FIFO to return",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a regular file"),
        "{}",
        stderr(&out)
    );
}
