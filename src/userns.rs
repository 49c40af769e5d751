//! Where qus runs: in the host's (initial) user namespace or in a child
//! one, as root or not, and which binfmt_misc instance a path reaches.
//!
//! Since Linux 6.7 each user namespace may mount a binfmt_misc instance of
//! its own, and the kernel looks a program up in the instance of the
//! nearest user namespace that has one. That makes emulation without host
//! root possible (podman's rootless namespace, `buildah unshare`,
//! `qus run`), but it also means the same command can act on very
//! different things: the host's entries, or entries that vanish with a
//! namespace. This module says which, so the rest of qus can pick user
//! defaults and tell the user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

/// One line of `/proc/self/uid_map`: `inside outside count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u64,
    pub outside: u64,
    pub count: u64,
}

/// Which binfmt_misc instance qus talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Instance {
    /// The host's: qus runs in the initial user namespace.
    Host,
    /// A user namespace's own instance (Linux ≥ 6.7): its entries vanish
    /// with the namespace.
    Private,
    /// A parent user namespace's instance, mounted where a child one can
    /// see it: readable, not the child's to change.
    Ancestor,
}

impl Instance {
    /// For people, after "instance:".
    pub fn describe(self) -> &'static str {
        match self {
            Instance::Host => "the host's (entries apply to every process)",
            Instance::Private => {
                "private to this user namespace (entries apply inside it and vanish with it)"
            }
            Instance::Ancestor => {
                "a parent user namespace's (read-only from here; qus registers into a \
                 private one under $XDG_RUNTIME_DIR/qus/binfmt_misc)"
            }
        }
    }
}

impl IdRange {
    /// The id outside for an id inside, when this range maps it.
    pub fn to_outside(self, inside: u64) -> Option<u64> {
        (self.inside..self.inside.saturating_add(self.count))
            .contains(&inside)
            .then(|| self.outside + (inside - self.inside))
    }
}

/// Parse a `uid_map`/`gid_map` text; lines that are not three numbers are
/// skipped (the kernel never writes such lines).
fn parse_id_map(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            match f[..] {
                [inside, outside, count] => Some(IdRange {
                    inside,
                    outside,
                    count,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Where this process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// In the initial user namespace (`uid_map` is `0 0 4294967295`).
    pub initial: bool,
    /// Effective uid, as this namespace sees it.
    pub euid: u32,
    /// The host user behind this process: the parent-namespace uid that
    /// this namespace's root (or, failing that, our euid) maps to. In the
    /// initial namespace, the euid itself.
    pub user: u32,
    /// This namespace's uid map.
    pub uid_map: Vec<IdRange>,
}

impl Place {
    /// Root of the host: the only place where host-wide defaults apply.
    pub fn host_root(&self) -> bool {
        self.initial && self.euid == 0
    }

    /// Whether user defaults apply (state under `$XDG_RUNTIME_DIR`, the
    /// user's config dir, a private binfmt_misc instance).
    pub fn rootless(&self) -> bool {
        !self.host_root()
    }
}

/// Where this process runs (read once).
pub fn here() -> &'static Place {
    static PLACE: OnceLock<Place> = OnceLock::new();
    PLACE.get_or_init(|| {
        let euid = rustix::process::geteuid().as_raw();
        let uid_map = crate::fsutil::read_generated(std::path::Path::new("/proc/self/uid_map"))
            .map(|t| parse_id_map(&t))
            .unwrap_or_default();
        place_from(euid, uid_map)
    })
}

/// The pure part of [`here`].
fn place_from(euid: u32, uid_map: Vec<IdRange>) -> Place {
    // No /proc (or an empty map): assume the initial namespace, which
    // keeps the strict rules.
    let initial = uid_map.is_empty()
        || uid_map
            == [IdRange {
                inside: 0,
                outside: 0,
                count: u64::from(u32::MAX),
            }];
    let outside_of = |id: u32| {
        uid_map
            .iter()
            .find_map(|r| r.to_outside(u64::from(id)))
            .and_then(|o| u32::try_from(o).ok())
    };
    let user = if initial {
        euid
    } else {
        outside_of(0).or_else(|| outside_of(euid)).unwrap_or(euid)
    };
    Place {
        initial,
        euid,
        user,
        uid_map,
    }
}

/// Is this a container of its own, whose `/run` and binfmt_misc mount
/// point are its own too? Either PID 1 is in this very user namespace
/// (from `unshare --user` on a host, PID 1 is the host's init, whose
/// namespace is not even readable), or the namespace maps a range of ids
/// as containers do (systemd-nspawn `-U`, rootless podman, pods with user
/// namespaces: 65536 each), where an ad-hoc `unshare --map-root-user`
/// maps one. (PID 1 may be out of reach: a hardened service cannot read
/// its namespace without CAP_SYS_PTRACE.)
pub fn own_container() -> bool {
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
    let shares_init = matches!((ns("1"), ns("self")), (Some(a), Some(b)) if a == b);
    let mapped: u64 = here().uid_map.iter().map(|r| r.count).sum();
    shares_init || (!here().initial && mapped > 1)
}

/// The user's runtime directory: `$XDG_RUNTIME_DIR` when it is an absolute
/// path, else `/run/user/UID` (UID being the host user) when it exists.
pub fn runtime_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if d.is_absolute() {
            return Some(d);
        }
    }
    let d = PathBuf::from(format!("/run/user/{}", here().user));
    d.is_dir().then_some(d)
}

/// The user's configuration home: `$XDG_CONFIG_HOME`, else `$HOME/.config`.
pub fn config_home() -> Option<PathBuf> {
    let abs = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    abs(std::env::var_os("XDG_CONFIG_HOME"))
        .or_else(|| abs(std::env::var_os("HOME")).map(|h| h.join(".config")))
}

/// Which instance a binfmt_misc path reaches, as seen from here.
/// binfmt_misc gives its files to the root of the namespace that mounted
/// it, so from inside a child namespace an ancestor's instance shows an
/// owner that is not our root. Not mounted: the instance qus would mount
/// there (the host's on the host, else this namespace's own).
pub fn instance_at(root: &Path) -> Instance {
    let owner = std::fs::metadata(root.join("status")).ok().map(|m| m.uid());
    instance_from(here(), owner)
}

/// The pure part of [`instance_at`].
fn instance_from(place: &Place, status_owner: Option<u32>) -> Instance {
    match status_owner {
        _ if place.initial => Instance::Host,
        Some(0) | None => Instance::Private,
        Some(_) => Instance::Ancestor,
    }
}

/// The host user's subordinate uid ranges (`/etc/subuid`, by name or
/// number): ids that user controls as much as its own.
fn subordinate_uids(user: u32) -> Vec<(u64, u64)> {
    let name = user_name(user);
    std::fs::read_to_string("/etc/subuid")
        .map(|text| parse_subid(&text, user, name.as_deref()))
        .unwrap_or_default()
}

/// The `(start, count)` ranges of `/etc/subuid` text for a user.
fn parse_subid(text: &str, user: u32, name: Option<&str>) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split(':');
            let who = f.next()?;
            let start = f.next()?.parse().ok()?;
            let count = f.next()?.parse().ok()?;
            (who == user.to_string() || Some(who) == name).then_some((start, count))
        })
        .collect()
}

/// A user's name from `/etc/passwd`.
fn user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
    })
}

/// Is `inside` (an id of this namespace) mapped to the host user or one of
/// its subordinate ids? Such an id is under that user's control; in a
/// user's own namespace it is as trusted as the namespace's root.
pub fn maps_to_user(place: &Place, inside: u32) -> bool {
    let Some(outside) = place
        .uid_map
        .iter()
        .find_map(|r| r.to_outside(u64::from(inside)))
    else {
        return false;
    };
    outside == u64::from(place.user)
        || subordinate_uids(place.user)
            .iter()
            .any(|&(start, count)| (start..start.saturating_add(count)).contains(&outside))
}

/// The running kernel's release and whether it is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> (String, bool) {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse::<u32>().ok());
    let have = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    (release, have >= (major, minor))
}

/// The inode of this process's user namespace: tells namespaces apart
/// (each has its own binfmt_misc instance, so its own records).
pub fn namespace_id() -> Option<u64> {
    std::fs::metadata("/proc/self/ns/user")
        .ok()
        .map(|m| m.ino())
}

/// Move this process into a new user namespace and a new mount namespace
/// that it owns, mapped so that the caller is root there, plus the
/// caller's subordinate ids (`/etc/subuid`, `/etc/subgid`) through
/// `newuidmap`/`newgidmap` when it has them, so that programs in it can
/// own files as other users. The process must be single-threaded.
///
/// Why a helper: `newuidmap` is setuid root and must run outside the new
/// namespace (inside, root's setuid bit means nothing), on our pid, after
/// we unshared. So a shell is started *before* unsharing and told to go
/// after.
pub fn enter_new() -> anyhow::Result<()> {
    use anyhow::{bail, Context};
    use std::process::{Command, Stdio};

    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let script = map_script(std::process::id(), uid, gid);
    let mut helper = match script {
        Some(script) => Some(
            Command::new("/bin/sh")
                .args(["-c", &script])
                .stdin(Stdio::piped())
                .spawn()
                .context("starting the id-mapping helper (/bin/sh)")?,
        ),
        None => None,
    };

    // SAFETY: the only hazard rustix names is `UnshareFlags::FILES`
    // (threads seeing another fd table); only NEWUSER and NEWNS are asked
    // for, and the kernel refuses NEWUSER in a multi-threaded process.
    let unshared = unsafe {
        rustix::thread::unshare_unsafe(
            rustix::thread::UnshareFlags::NEWUSER | rustix::thread::UnshareFlags::NEWNS,
        )
    };
    if let Err(e) = unshared {
        if let Some(h) = helper.as_mut() {
            let _ = h.kill();
            let _ = h.wait();
        }
        bail!(
            "cannot create a user namespace: {e} (is kernel.unprivileged_userns_clone \
             or user.max_user_namespaces set to 0?)"
        );
    }

    map_ids(helper, uid, gid)
}

/// The shell script that maps more than the caller's own id into the new
/// namespace, from the parent namespace: by newuidmap for a user with
/// subordinate ids, and for root by root itself, outside (inside, the
/// write is refused). `None`: the caller maps its own id, from inside.
fn map_script(pid: u32, uid: u32, gid: u32) -> Option<String> {
    let name = user_name(uid);
    let subgid = std::fs::read_to_string("/etc/subgid")
        .map(|t| parse_subid(&t, uid, name.as_deref()))
        .unwrap_or_default();
    let subuid = subordinate_uids(uid);
    let helpers = ["newuidmap", "newgidmap"]
        .iter()
        .all(|h| find_in_path(h).is_some());
    match (subuid.first(), subgid.first()) {
        (Some(&(su, sc)), Some(&(sg, gc))) if uid != 0 && helpers => Some(format!(
            "read _ && newuidmap {pid} 0 {uid} 1 1 {su} {sc} && newgidmap {pid} 0 {gid} 1 1 {sg} {gc}"
        )),
        _ if uid == 0 => Some(format!(
            "read _ && echo '0 0 65536' > /proc/{pid}/uid_map && echo '0 0 65536' > /proc/{pid}/gid_map"
        )),
        _ => None,
    }
}

/// After unsharing: let the helper map the ids and wait for it, or (no
/// helper) map the caller's own id from inside.
fn map_ids(helper: Option<std::process::Child>, uid: u32, gid: u32) -> anyhow::Result<()> {
    use anyhow::{bail, Context};
    use std::io::Write;
    match helper {
        Some(mut h) => {
            if let Some(mut stdin) = h.stdin.take() {
                let _ = stdin.write_all(b"go\n");
            }
            let status = h.wait().context("waiting for the id-mapping helper")?;
            if !status.success() && uid == 0 {
                bail!("mapping ids 0-65535 into the new user namespace failed ({status})");
            }
            if !status.success() {
                bail!("newuidmap/newgidmap failed ({status}): check /etc/subuid and /etc/subgid");
            }
        }
        None => {
            // Anyone else may map only their own id, from inside.
            let write = |file: &str, text: &str| {
                std::fs::write(format!("/proc/self/{file}"), text)
                    .with_context(|| format!("writing /proc/self/{file}"))
            };
            write("setgroups", "deny")?;
            write("uid_map", &format!("0 {uid} 1"))?;
            write("gid_map", &format!("0 {gid} 1"))?;
        }
    }
    Ok(())
}

/// A program on `$PATH`.
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(inside: u64, outside: u64, count: u64) -> IdRange {
        IdRange {
            inside,
            outside,
            count,
        }
    }

    #[test]
    fn initial_namespace_is_the_identity_map() {
        let p = place_from(0, parse_id_map("         0          0 4294967295\n"));
        assert!(p.initial && p.host_root() && !p.rootless());
        let user = place_from(1000, parse_id_map("0 0 4294967295"));
        assert!(user.initial && user.rootless());
        assert_eq!(user.user, 1000);
    }

    #[test]
    fn podman_namespace_maps_root_to_the_user() {
        let p = place_from(0, parse_id_map("0 1001 1\n1 100000 65536\n"));
        assert!(!p.initial && p.rootless());
        assert_eq!(p.user, 1001);
        assert_eq!(p.uid_map, vec![r(0, 1001, 1), r(1, 100000, 65536)]);
        assert_eq!(instance_from(&p, Some(0)), Instance::Private);
        assert_eq!(instance_from(&p, Some(65534)), Instance::Ancestor);
    }

    #[test]
    fn root_mapped_to_root_is_still_a_child_namespace() {
        // `unshare -U --map-user=0`, as the tests' sandbox does.
        let p = place_from(0, parse_id_map("0 0 1\n1000 1000 1\n"));
        assert!(!p.initial);
        assert_eq!(p.user, 0);
    }

    #[test]
    fn subordinate_ids_by_name_or_number() {
        let text = "alice:100000:65536\n1001:300000:10\nbob:200000:65536\n";
        assert_eq!(
            parse_subid(text, 1001, Some("alice")),
            vec![(100000, 65536), (300000, 10)]
        );
        assert_eq!(parse_subid(text, 7, None), vec![]);
    }
}
