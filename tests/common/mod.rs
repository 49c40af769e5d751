//! A private binfmt_misc instance for one test, and helpers to run the real
//! `qus` binary and foreign programs inside it.
//!
//! Each [`Sandbox`] starts a holder process in a new user + mount namespace
//! (`unshare --user --map-root-user --mount`) that mounts binfmt_misc on a
//! temporary directory: since Linux 6.7 that is a private, empty instance,
//! so the host's registrations are never touched. Commands then join that
//! namespace with `nsenter`; the test reads the instance through
//! `/proc/<holder>/root/…`.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A command's standard error, as text (for messages and assertions).
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A command's standard output, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub const QUS: &str = env!("CARGO_BIN_EXE_qus");

/// The `qus` the sandbox helpers run: cargo's build of this tree, or the
/// one in `$QUS_BIN_DIR` (the benchmark points it at `target/dist`, the
/// build that ships). Tests never set it.
pub fn qus_bin() -> String {
    bin_or("qus", QUS)
}

/// The `qusd` the sandbox helpers run (see [`qus_bin`]).
pub fn qusd_bin() -> String {
    bin_or("qusd", QUSD)
}

fn bin_or(name: &str, built: &str) -> String {
    match std::env::var_os("QUS_BIN_DIR") {
        Some(dir) => Path::new(&dir).join(name).display().to_string(),
        None => built.to_string(),
    }
}

/// Install `bytes` as `dir/name` the way some installers do: written into
/// an unnamed `O_TMPFILE` in `dir` (mode 0755), then linked in with
/// `linkat` (CREATE under its name; the close is reported as `#INODE`).
/// Returns the file, still open for writing: dropping it is the close.
pub fn link_in_from_tmpfile(dir: &Path, name: &str, bytes: &[u8]) -> fs::File {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o755)
        .open(dir)
        .expect("O_TMPFILE in the directory");
    f.write_all(bytes).expect("write");
    rustix::fs::linkat(
        rustix::fs::CWD,
        format!("/proc/self/fd/{}", f.as_raw_fd()).as_str(),
        rustix::fs::CWD,
        dir.join(name).as_path(),
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    )
    .expect("linkat the O_TMPFILE in");
    f
}

/// Fail (never skip) with a message saying what to install.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `{tool}`: install it with `apt-get install -y {package}`"
    );
}

/// The real qemu emulator for an arch; fails with an install hint if absent.
pub fn require_qemu(arch: &str) -> PathBuf {
    let p = PathBuf::from(format!("/usr/bin/qemu-{arch}-static"));
    assert!(
        p.is_file(),
        "this test needs {}: install it with `apt-get install -y qemu-user-static`",
        p.display()
    );
    p
}

/// A fresh work dir with the sandbox's sub-directories. Root-owned 0755:
/// the safety rules refuse interpreters below dirs others can write.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("qus-test-")
        .tempdir()
        .expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    for sub in ["binfmt", "etc", "state", "bin"] {
        fs::create_dir(dir.path().join(sub)).expect("mkdir");
    }
    dir
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    holder: Child,
    /// Where binfmt_misc is mounted inside the namespace.
    bm: PathBuf,
}

impl Sandbox {
    /// A new private instance with empty config, search and state dirs.
    pub fn new() -> Sandbox {
        Sandbox::start(true)
    }

    /// A namespace whose binfmt_misc is not mounted yet (qus must mount it).
    pub fn unmounted() -> Sandbox {
        Sandbox::start(false)
    }

    /// binfmt_misc at the system path /proc/sys/fs/binfmt_misc (inside
    /// the namespace), for tools that cannot be pointed elsewhere; also a
    /// private /var/lib/binfmts for update-binfmts' database.
    pub fn system_path() -> Sandbox {
        let mut sb = Sandbox::start(false);
        let varlib = sb.path().join("varlib-binfmts");
        fs::create_dir(&varlib).expect("mkdir");
        let st = sb
            .command("sh")
            .arg("-c")
            .arg(format!(
                "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && \
                 if [ -d /var/lib/binfmts ]; then mount --bind '{}' /var/lib/binfmts; fi",
                varlib.display()
            ))
            .status()
            .expect("mount");
        assert!(
            st.success(),
            "cannot mount binfmt_misc on /proc/sys/fs/binfmt_misc in the namespace"
        );
        sb.bm = PathBuf::from("/proc/sys/fs/binfmt_misc");
        sb
    }

    /// A namespace that maps host uids/gids 0..65536 one to one (not just
    /// root), so files of ordinary host users keep their owner inside
    /// instead of showing as the overflow uid.
    pub fn with_host_ids() -> Sandbox {
        require_tool("unshare", "util-linux");
        let dir = workdir();
        let bm = dir.path().join("binfmt");
        let script = format!(
            "read go; mount -t binfmt_misc none '{}' || exit 1; echo ready; exec sleep 100000",
            bm.display()
        );
        let mut holder = Command::new("unshare")
            .args([
                "--user",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
            ])
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn unshare");
        let pid = holder.id();
        // unshare has entered the namespace once its uid_map is writable
        // and still empty.
        let map = format!("/proc/{pid}/uid_map");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let ns = fs::read_link(format!("/proc/{pid}/ns/user")).ok();
            let own = fs::read_link("/proc/self/ns/user").ok();
            if ns.is_some() && ns != own {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "unshare did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        fs::write(&map, "0 0 65536\n").expect("write uid_map");
        fs::write(format!("/proc/{pid}/gid_map"), "0 0 65536\n").expect("write gid_map");
        {
            use std::io::Write as _;
            let stdin = holder.stdin.as_mut().expect("stdin");
            stdin.write_all(b"go\n").expect("go");
        }
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("holder stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read holder");
        assert_eq!(
            line.trim(),
            "ready",
            "could not mount binfmt_misc in the mapped namespace"
        );
        Sandbox { bm, dir, holder }
    }

    fn start(mount: bool) -> Sandbox {
        require_tool("unshare", "util-linux");
        require_tool("nsenter", "util-linux");
        let dir = workdir();
        let bm = dir.path().join("binfmt");
        let script = if mount {
            format!(
                "mount -t binfmt_misc none '{}' || exit 1; echo ready; exec sleep 100000",
                bm.display()
            )
        } else {
            "echo ready; exec sleep 100000".to_string()
        };
        let mut holder = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
            ])
            .arg(&script)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn unshare");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("holder stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read holder");
        assert_eq!(
            line.trim(),
            "ready",
            "could not mount a private binfmt_misc instance: this needs Linux >= 6.7 \
             with user namespaces enabled (kernel.unprivileged_userns_clone / \
             user.max_user_namespaces)"
        );
        Sandbox { bm, dir, holder }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The binfmt_misc mount point, as seen inside the namespace.
    pub fn binfmt(&self) -> PathBuf {
        self.bm.clone()
    }

    /// The same directory as the test process can reach it.
    pub fn binfmt_outside(&self) -> PathBuf {
        let inner = self.binfmt();
        PathBuf::from(format!("/proc/{}/root", self.holder.id()))
            .join(inner.strip_prefix("/").expect("absolute"))
    }

    pub fn etc(&self) -> PathBuf {
        self.path().join("etc")
    }

    pub fn bin(&self) -> PathBuf {
        self.path().join("bin")
    }

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("--target")
            .arg(self.holder.id().to_string())
            .args(["--user", "--mount", "--"])
            .arg(program);
        c
    }

    /// `qus` or `qusd` inside the namespace, pointed at this sandbox's
    /// binfmt_misc, state and config dirs, on a pretend x86_64 host.
    pub fn tool(&self, program: &str) -> Command {
        self.tool_on(program, "x86_64")
    }

    /// [`Sandbox::tool`] on a pretend host of another `uname -m`.
    pub fn tool_on(&self, program: &str, host: &str) -> Command {
        self.tool_under(&[], program, host)
    }

    /// [`Sandbox::tool_on`] run by another program inside the namespace
    /// (`strace …`, `unshare --pid …`): `wrapper` comes first, then the
    /// tool and its sandbox options.
    pub fn tool_under(&self, wrapper: &[&str], program: &str, host: &str) -> Command {
        let mut c = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = self.command(first);
                c.args(rest).arg(program);
                c
            }
            None => self.command(program),
        };
        c.arg("--binfmt-misc")
            .arg(self.binfmt())
            .arg("--state-dir")
            .arg(self.state())
            .arg("--config-dir")
            .arg(self.etc())
            .arg("--host-arch")
            .arg(host);
        c
    }

    /// Run the real `qus` inside the namespace, pointed at this sandbox.
    pub fn qus(&self, args: &[&str]) -> Output {
        self.qus_on("x86_64", args)
    }

    /// Run `qus` as if the host's `uname -m` were `host`.
    pub fn qus_on(&self, host: &str, args: &[&str]) -> Output {
        let out = self
            .tool_on(&qus_bin(), host)
            .args(args)
            .output()
            .expect("run qus");
        eprintln!(
            "$ qus {}\n[exit {:?}]\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Run `qus` and insist on exit 0.
    pub fn qus_ok(&self, args: &[&str]) -> String {
        let out = self.qus(args);
        assert!(out.status.success(), "qus {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `qus status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let text = self.qus_ok(&["status", "--json"]);
        serde_json::from_str(&text).expect("status --json is JSON")
    }

    /// The state of one entry in `qus status --json`.
    pub fn state_of(&self, name: &str) -> String {
        let s = self.status();
        s["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in status"))["state"]
            .as_str()
            .expect("state")
            .to_string()
    }

    /// Names of the entries in the kernel instance.
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.binfmt_outside())
            .expect("read binfmt_misc")
            .map(|e| {
                e.expect("dirent")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n != "register" && n != "status")
            .collect();
        names.sort();
        names
    }

    /// The kernel's text for one entry, if it exists.
    pub fn entry(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.binfmt_outside().join(name)).ok()
    }

    /// Write a register string directly (as another tool would).
    pub fn register_raw(&self, line: &str) {
        self.write_inside(&self.binfmt().join("register"), line);
    }

    /// Like [`Sandbox::write_inside`], but the target may vanish meanwhile
    /// (qusd removing the entry): returns whether the write happened.
    pub fn try_write_inside(&self, path: &Path, text: &str) -> bool {
        self.command("sh")
            .args(["-c", "printf '%s' \"$1\" > \"$2\" 2>/dev/null", "sh", text])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Write a string to a file from inside the namespace (one write).
    pub fn write_inside(&self, path: &Path, text: &str) {
        let st = self
            .command("sh")
            .args(["-c", "printf '%s' \"$1\" > \"$2\"", "sh", text])
            .arg(path)
            .status()
            .expect("sh");
        assert!(
            st.success(),
            "writing {text:?} to {} failed",
            path.display()
        );
    }

    /// `10-base.toml`: search only the sandbox's bin dir, plus `extra`.
    pub fn search_bin(&self, extra: &str) {
        self.write_config(
            "10-base.toml",
            &format!(
                "[qemu]\nsearch_path = [\"{}\"]\n{extra}",
                self.bin().display()
            ),
        );
    }

    /// Write a drop-in into the sandbox's config dir.
    pub fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let p = self.etc().join(name);
        fs::write(&p, text).expect("write config");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        p
    }

    /// Copy (or link) an emulator into the sandbox's search dir.
    pub fn install_emulator(&self, arch: &str) -> PathBuf {
        let src = require_qemu(arch);
        let dst = self.bin().join(format!("qemu-{arch}-static"));
        fs::copy(&src, &dst).expect("copy emulator");
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).expect("chmod");
        dst
    }

    /// Write a program into the sandbox and run it inside the namespace.
    pub fn run_program(&self, name: &str, bytes: &[u8]) -> Output {
        let p = self.path().join(name);
        fs::write(&p, bytes).expect("write program");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        self.command(&p).output().expect("run program")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Counts write events on a binfmt_misc instance: a registration shows as a
/// MODIFY of `register`, a removal as DELETE, an enable/disable as MODIFY
/// of the entry file.
pub struct WriteWatch {
    inotify: inotify::Inotify,
}

impl WriteWatch {
    pub fn new(dir: &Path) -> WriteWatch {
        let inotify = inotify::Inotify::init().expect("inotify");
        inotify
            .watches()
            .add(
                dir,
                inotify::WatchMask::MODIFY
                    | inotify::WatchMask::DELETE
                    | inotify::WatchMask::CREATE,
            )
            .expect("watch binfmt_misc");
        WriteWatch { inotify }
    }

    /// Events seen since the last call, as (name, mask) pairs.
    pub fn drain(&mut self) -> Vec<String> {
        let mut buf = [0u8; 8192];
        let mut seen = vec![];
        loop {
            match self.inotify.read_events(&mut buf) {
                Ok(events) => {
                    let mut any = false;
                    for e in events {
                        any = true;
                        seen.push(format!(
                            "{:?} {}",
                            e.mask,
                            e.name
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default()
                        ));
                    }
                    if !any {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("inotify read: {e}"),
            }
        }
        seen
    }
}

pub const QUSD: &str = env!("CARGO_BIN_EXE_qusd");

/// Poll `cond` every 20 ms until it holds or `secs` pass.
pub fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("timed out after {secs}s waiting for: {what}");
}

/// A real `NOTIFY_SOCKET`: a datagram socket the test binds. A thread
/// reads it all the time, as systemd does, so qusd never blocks on a full
/// socket buffer.
pub struct NotifySocket {
    pub path: PathBuf,
    inbox: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// How many messages of `inbox` were already looked at.
    cursor: usize,
    pub seen: Vec<String>,
}

impl NotifySocket {
    pub fn new(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        let inbox = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = inbox.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                match sink.lock() {
                    Ok(mut v) => v.push(msg),
                    Err(_) => return,
                }
            }
        });
        NotifySocket {
            path,
            inbox,
            cursor: 0,
            seen: vec![],
        }
    }

    /// Messages that arrived since the last look.
    pub fn take_new(&mut self) -> Vec<String> {
        let v = self.inbox.lock().expect("inbox");
        let new: Vec<String> = v[self.cursor..].to_vec();
        self.cursor = v.len();
        drop(v);
        self.seen.extend(new.clone());
        new
    }

    /// Wait for a message that satisfies `pred` (returns it); later
    /// messages stay for the next call.
    pub fn wait(&mut self, secs: u64, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < end {
            let v = self.inbox.lock().expect("inbox").clone();
            for (i, m) in v.iter().enumerate().skip(self.cursor) {
                self.seen.push(m.clone());
                if pred(m) {
                    self.cursor = i + 1;
                    return m.clone();
                }
            }
            self.cursor = v.len();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!(
            "no sd_notify message with {what} within {secs}s; seen: {:?}",
            self.seen
        );
    }

    /// Forget messages received so far (e.g. a stopped qusd's late READY=1,
    /// which must not be taken for a new one's).
    pub fn skip_pending(&mut self) {
        self.take_new();
    }
}

/// The real `qusd`, inside a sandbox, with its log in a file.
pub struct Qusd {
    pub child: Child,
    pub log: PathBuf,
}

impl Qusd {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Wait until qusd has handled every event caused so far. A barrier
    /// file is created in the config dir (a name qusd ignores); inotify
    /// delivers events in order, so once qusd has read the barrier's event
    /// and then reports itself quiet (nothing pending, no pass running),
    /// everything before it has been handled. No sleeping, no guessing.
    pub fn settle(&self, sb: &Sandbox) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            ".barrier-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let path = sb.etc().join(&name);
        fs::write(&path, "").expect("write barrier");
        wait_for(30, &format!("qusd to read {name} and go quiet"), || {
            let log = self.log_text();
            log.find(&name)
                .is_some_and(|at| log[at..].contains("quiet: every event so far is handled"))
        });
        // The barrier stays: removing it would wake qusd once more.
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(st.success(), "kill -s {sig}");
    }

    /// Wait for exit; returns the exit code.
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < end {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("qusd did not exit within {secs}s\n{}", self.log_text());
    }
}

impl Drop for Qusd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- qusd log ---\n{}", self.log_text());
        }
    }
}

impl Sandbox {
    /// Start the real qusd in this sandbox; `env` adds variables.
    pub fn qusd(&self, notify: Option<&NotifySocket>, env: &[(&str, &str)]) -> Qusd {
        let n = fs::read_dir(self.path()).map(|d| d.count()).unwrap_or(0);
        let log = self.path().join(format!("qusd-{n}.log"));
        let file = fs::File::create(&log).expect("log file");
        let mut c = self.tool(&qusd_bin());
        c.arg("--log-level")
            .arg("trace")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(file);
        if let Some(n) = notify {
            c.env("NOTIFY_SOCKET", &n.path);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().expect("spawn qusd");
        Qusd { child, log }
    }

    /// Start qusd and wait for READY=1.
    pub fn qusd_ready(&self, notify: &mut NotifySocket) -> Qusd {
        notify.skip_pending();
        let d = self.qusd(Some(notify), &[]);
        notify.wait(20, "READY=1", |m| m.contains("READY=1"));
        d
    }

    pub fn has_entry(&self, name: &str) -> bool {
        self.entry(name).is_some()
    }
}

/// Run `cmd` with its output captured, at most `secs`: killed (never left
/// blocked behind the test) and a failure naming `what` when it hangs.
pub fn output_within(cmd: &mut Command, secs: u64, what: &str) -> Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().ok().flatten().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} hung for {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}
