//! The state directory: ownership records and the lock that serialises
//! `qus` and `qusd`.
//!
//! `owned.json` lists the entries qus registered or adopted, with the
//! register string and the interpreter identity at that time. It lives in
//! `/run` by default: binfmt_misc entries do not survive a reboot either.
//! A missing or unreadable file means "nothing owned yet": qus then adopts
//! identical entries instead of touching anything else.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::binfmt::entry::parse_register_line;
use crate::observe::Identity;
use crate::plan::Owned;

const FILE: &str = "owned.json";
const LOCK: &str = "lock";

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    entries: BTreeMap<String, Record>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    arch: Option<String>,
    /// The register string qus wrote (or would have written).
    register: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<Identity>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Take the exclusive lock, waiting for another qus/qusd to finish.
    pub fn lock(&self) -> io::Result<Lock> {
        fs::create_dir_all(&self.dir).map_err(|e| with_path(e, &self.dir))?;
        let path = self.dir.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| with_path(e, &path))?;
        file.lock().map_err(|e| with_path(e, &path))?;
        Ok(Lock { _file: file })
    }

    /// Read the ownership records. Returns the records and, when the file
    /// was unusable, a warning saying why (the records are then empty).
    pub fn load(&self) -> (BTreeMap<String, Owned>, Option<String>) {
        let path = self.dir.join(FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (BTreeMap::new(), None),
            Err(e) => return (BTreeMap::new(), Some(format!("{}: {e}", path.display()))),
        };
        let disk: OnDisk = match serde_json::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                return (
                    BTreeMap::new(),
                    Some(format!("{}: corrupt, starting afresh: {e}", path.display())),
                )
            }
        };
        let mut owned = BTreeMap::new();
        let mut bad = Vec::new();
        for (name, r) in disk.entries {
            match parse_register_line(&r.register) {
                Ok((_, spec)) => {
                    owned.insert(
                        name,
                        Owned {
                            arch: r.arch,
                            spec,
                            identity: r.identity,
                        },
                    );
                }
                Err(e) => bad.push(format!("{name}: {e}")),
            }
        }
        let warning = (!bad.is_empty()).then(|| {
            format!(
                "{}: dropped bad records: {}",
                path.display(),
                bad.join("; ")
            )
        });
        (owned, warning)
    }

    /// Write the records atomically (temp file + rename).
    pub fn save(&self, owned: &BTreeMap<String, Owned>) -> io::Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| with_path(e, &self.dir))?;
        let disk = OnDisk {
            version: 1,
            entries: owned
                .iter()
                .map(|(name, o)| {
                    (
                        name.clone(),
                        Record {
                            arch: o.arch.clone(),
                            register: o.spec.register_line(name),
                            identity: o.identity,
                        },
                    )
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&disk)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let path = self.dir.join(FILE);
        let tmp = self.dir.join(format!(".{FILE}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| with_path(e, &tmp))?;
        f.write_all(text.as_bytes())
            .map_err(|e| with_path(e, &tmp))?;
        f.sync_all().map_err(|e| with_path(e, &tmp))?;
        fs::rename(&tmp, &path).map_err(|e| with_path(e, &path))
    }
}

/// What a running qusd publishes about itself (`STATE_DIR/qusd.json`), for
/// `qus status --daemon` (readiness/liveness probes in containers, where
/// there is no systemd to ask).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DaemonStatus {
    pub pid: u32,
    pub ready: bool,
    pub status: String,
}

const DAEMON_FILE: &str = "qusd.json";
const NATIVE_FILE: &str = "native.json";

/// Native verdicts hold for one boot of one kernel (ia32_emulation and
/// friends do not change while it runs), so they are cached under the boot
/// id and the host's machine name: a re-run costs no probe executions.
#[derive(Debug, Serialize, Deserialize)]
struct NativeCache {
    key: String,
    verdicts: BTreeMap<String, crate::observe::Native>,
}

impl StateDir {
    /// Publish the daemon's status (atomically).
    pub fn write_daemon_status(&self, st: &DaemonStatus) -> io::Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| with_path(e, &self.dir))?;
        let text =
            serde_json::to_string(st).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let tmp = self.dir.join(format!(".{DAEMON_FILE}.tmp"));
        fs::write(&tmp, text).map_err(|e| with_path(e, &tmp))?;
        fs::rename(&tmp, self.dir.join(DAEMON_FILE)).map_err(|e| with_path(e, &self.dir))
    }

    /// The published daemon status, if any.
    pub fn read_daemon_status(&self) -> Option<DaemonStatus> {
        let text = fs::read_to_string(self.dir.join(DAEMON_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Cached native verdicts for `key`, if any.
    pub fn load_native(&self, key: &str) -> Option<BTreeMap<String, crate::observe::Native>> {
        let text = fs::read_to_string(self.dir.join(NATIVE_FILE)).ok()?;
        let cache: NativeCache = serde_json::from_str(&text).ok()?;
        (cache.key == key).then_some(cache.verdicts)
    }

    /// Cache native verdicts; failure (read-only state dir) only costs a
    /// re-probe next time.
    pub fn save_native(&self, key: &str, verdicts: &BTreeMap<String, crate::observe::Native>) {
        let cache = NativeCache {
            key: key.to_string(),
            verdicts: verdicts.clone(),
        };
        let Ok(text) = serde_json::to_string(&cache) else {
            return;
        };
        let tmp = self.dir.join(format!(".{NATIVE_FILE}.tmp"));
        if fs::create_dir_all(&self.dir).is_ok() && fs::write(&tmp, text).is_ok() {
            let _ = fs::rename(&tmp, self.dir.join(NATIVE_FILE));
        }
    }

    /// Withdraw it (clean stop).
    pub fn clear_daemon_status(&self) {
        let _ = fs::remove_file(self.dir.join(DAEMON_FILE));
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
