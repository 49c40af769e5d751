//! Finding the drop-ins that apply (masking across directories) and
//! reading each one safely: config steers what runs as root.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// The drop-in files that apply, in the order they apply.
///
/// Written here rather than taken from `liboverdrop`: that crate skips
/// fragments that are symlinks to regular files, which is exactly how a
/// Kubernetes ConfigMap volume presents its files (`NAME -> ..data/NAME`).
pub fn fragment_files(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut by_name: BTreeMap<std::ffi::OsString, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ConfigError {
                    path: Some(dir.clone()),
                    line: None,
                    message: format!("cannot read config directory: {e}"),
                })
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let text = name.to_string_lossy();
            if text.starts_with('.') || !text.ends_with(".toml") {
                continue;
            }
            let path = entry.path();
            // Follows symlinks: a link to /dev/null masks, a link to a
            // regular file (ConfigMap) counts as that file.
            match std::fs::canonicalize(&path) {
                Ok(target) if target == Path::new("/dev/null") => {
                    by_name.remove(&name);
                }
                Ok(target) if target.is_file() => {
                    by_name.insert(name, path);
                }
                // Dangling link or not a file: nothing to apply, and
                // nothing masked either.
                _ => {}
            }
        }
    }
    Ok(by_name.into_values().collect())
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
    let mut file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
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
