//! Finding the drop-ins that apply (masking across directories) and
//! reading each one safely: config steers what runs as root.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::ConfigError;
use crate::safety;

/// The drop-in files that apply, in the order they apply.
///
/// Written here rather than taken from `liboverdrop`: that crate skips
/// fragments that are symlinks to regular files, which is exactly how a
/// Kubernetes ConfigMap volume presents its files (`NAME -> ..data/NAME`).
///
/// Every directory is checked first (see `safety::check_config_dir`): a
/// user who could write a config directory could mask an administrator's
/// drop-in or rename it away, so such a directory makes the whole
/// configuration invalid (qusd keeps the previous one). Every drop-in and
/// mask is then resolved hop by hop under the same rules as interpreters.
pub fn fragment_files(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    fragment_scan(dirs).map(|(files, _)| files)
}

/// Files in the config directories that do not apply, each with why.
pub type Skipped = Vec<(PathBuf, String)>;

/// [`fragment_files`], plus every file that does not apply and why (masked
/// by a later directory or a `/dev/null` link, a dangling link, not a
/// `*.toml`), for `qus config`.
pub fn fragment_scan(dirs: &[PathBuf]) -> Result<(Vec<PathBuf>, Skipped), ConfigError> {
    let mut by_name: BTreeMap<std::ffi::OsString, PathBuf> = BTreeMap::new();
    let mut skipped: Vec<(PathBuf, String)> = vec![];
    let cache = safety::DirCache::default();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(dir_error(dir, format!("cannot read config directory: {e}"))),
        };
        let kind = safety::check_config_dir(dir)
            .map_err(|r| dir_error(dir, format!("refused config directory: {r}")))?;
        // By name: what `qus config` lists does not depend on the order
        // the file system returns entries in.
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name();
            let text = name.to_string_lossy();
            if text.starts_with('.') || !text.ends_with(".toml") {
                if !text.starts_with('.') {
                    skipped.push((entry.path(), "ignored: not a *.toml file".into()));
                }
                continue;
            }
            let path = entry.path();
            if kind == safety::ConfigDir::ConfigMap {
                check_configmap_entry(dir, &path)?;
            }
            // Follows symlinks: a link to /dev/null masks, a link to a
            // regular file (ConfigMap) counts as that file.
            match std::fs::canonicalize(&path) {
                Ok(target) if target == Path::new("/dev/null") => {
                    refuse_unsafe_path(&path, &cache)?;
                    if let Some(old) = by_name.remove(&name) {
                        skipped.push((old, format!("masked by {} (-> /dev/null)", path.display())));
                    }
                    skipped.push((path, "a mask (-> /dev/null): disables this name".into()));
                }
                Ok(target) if target.is_file() => {
                    if kind == safety::ConfigDir::Strict {
                        refuse_unsafe_path(&path, &cache)?;
                    }
                    if let Some(old) = by_name.insert(name, path.clone()) {
                        skipped.push((old, format!("masked by {}", path.display())));
                    }
                }
                // Dangling link or not a file: nothing to apply, and
                // nothing masked either.
                _ => skipped.push((
                    path,
                    "ignored: a dangling link or not a regular file".into(),
                )),
            }
        }
    }
    Ok((by_name.into_values().collect(), skipped))
}

fn dir_error(dir: &Path, message: String) -> ConfigError {
    ConfigError {
        path: Some(dir.to_path_buf()),
        line: None,
        message,
    }
}

/// Every directory and link on the way to a drop-in (or a mask) must be
/// root's and writable by nobody else.
fn refuse_unsafe_path(path: &Path, cache: &safety::DirCache) -> Result<(), ConfigError> {
    safety::resolve(path, cache)
        .map(|_| ())
        .map_err(|r| ConfigError {
            path: Some(path.to_path_buf()),
            line: None,
            message: format!("refused: {r}"),
        })
}

/// In a ConfigMap volume others may write, only kubelet's layout counts:
/// a root-owned `NAME -> ..data/NAME` link, `..data` a root-owned link to
/// a directory that is root's and writable by root only.
fn check_configmap_entry(dir: &Path, path: &Path) -> Result<(), ConfigError> {
    let fail = |message: String| ConfigError {
        path: Some(path.to_path_buf()),
        line: None,
        message: format!(
            "refused: {message} (in a config directory others can write, only \
             Kubernetes ConfigMap links NAME -> ..data/NAME owned by root count)"
        ),
    };
    let meta = std::fs::symlink_metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.file_type().is_symlink() || !safety::trusted_owner(meta.uid()) {
        return Err(fail("not a link owned by root".into()));
    }
    let target = std::fs::read_link(path).map_err(|e| fail(e.to_string()))?;
    if !target.starts_with("..data") {
        return Err(fail(format!(
            "points to {}, not into ..data",
            target.display()
        )));
    }
    let data = std::fs::canonicalize(dir.join("..data")).map_err(|e| fail(e.to_string()))?;
    let top = std::fs::canonicalize(dir).map_err(|e| fail(e.to_string()))?;
    // The volume's own top directory was judged already; a version dir
    // elsewhere is checked all the way up.
    let checked = if data.parent() == Some(top.as_path()) {
        safety::check_dir_itself(&data)
    } else {
        safety::check_holder_dir(&data)
    };
    checked.map_err(|r| fail(r.to_string()))
}

/// Read one drop-in. Config files steer what runs as root, so a file a
/// non-root user could have written is refused. The checks are made on
/// the opened file itself (`fstat` of the descriptor the text is then
/// read from), so swapping the path between check and read gains
/// nothing. Files owned by the overflow uid count as root's only where
/// the safety rules say so (see `safety::trusted_owner`).
pub(super) fn read_fragment(path: &Path) -> Result<String, ConfigError> {
    let fail = |message: String| ConfigError {
        path: Some(path.to_path_buf()),
        line: None,
        message,
    };
    let mut file = match crate::fsutil::open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return Err(fail("refused: not a regular file".into()))
        }
        Err(e) => return Err(fail(format!("cannot read: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(fail("refused: not a regular file".into()));
    }
    if !crate::safety::trusted_owner(meta.uid()) {
        return Err(fail(format!(
            "refused: owned by uid {}, not root (a non-root user could change what runs as root)",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(fail(format!(
            "refused: writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(fail(
            "starts with a UTF-8 byte order mark (BOM); save it without one".into(),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}
