//! Caches in the state dir: what took a child or a probe to learn. Lost,
//! they are learnt again; so written without a flush, and failures to
//! write them are not errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::StateDir;
use crate::model::NativeVerdicts;

const NATIVE_FILE: &str = "native.json";
const VERSIONS_FILE: &str = "versions.json";

/// Native verdicts hold for one boot of one kernel (ia32_emulation and
/// friends do not change while it runs), so they are cached under the boot
/// id and the host's machine name: a re-run costs no probe executions.
#[derive(Debug, Serialize, Deserialize)]
struct NativeCache {
    key: String,
    verdicts: NativeVerdicts,
}

impl StateDir {
    /// Cached native verdicts for `key`, if any.
    pub fn load_native(&self, key: &str) -> Option<NativeVerdicts> {
        let text = self.readable()?.read(NATIVE_FILE).ok()??;
        let cache: NativeCache = serde_json::from_str(&text).ok()?;
        (cache.key == key).then_some(cache.verdicts)
    }

    /// Cache native verdicts; failure (read-only state dir) only costs a
    /// re-probe next time.
    pub fn save_native(&self, key: &str, verdicts: &NativeVerdicts) {
        let cache = NativeCache {
            key: key.to_string(),
            verdicts: verdicts.clone(),
        };
        if let Ok(text) = serde_json::to_string(&cache) {
            let _ = self.write_unsynced(NATIVE_FILE, text.as_bytes());
        }
    }

    /// Cached emulator versions, keyed by file identity.
    pub fn load_versions(&self) -> BTreeMap<String, String> {
        let cached = || -> Option<BTreeMap<String, String>> {
            serde_json::from_str(&self.readable()?.read(VERSIONS_FILE).ok()??).ok()
        };
        cached().unwrap_or_default()
    }

    /// Save the version cache; failure only costs running `--version`
    /// again next time.
    pub fn save_versions(&self, versions: &BTreeMap<String, String>) {
        if let Ok(text) = serde_json::to_string(versions) {
            let _ = self.write_unsynced(VERSIONS_FILE, text.as_bytes());
        }
    }
}
