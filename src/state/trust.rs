//! Whether the directories above the state dir can be trusted: its
//! records decide what qus removes, so whoever may write one of them
//! could swap the state dir for one holding forged records.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Every directory above the state dir, and every link on the way to it:
/// root's or the caller's, and writable by nobody else (a sticky one of
/// root's, such as /tmp, may be on the way). Otherwise whoever may write
/// one of them could swap the state dir for one holding forged records,
/// and those decide what qus removes.
pub(super) fn ancestors_trusted(dir: &Path, me: u32) -> Result<(), String> {
    let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    parent_trusted(parent, dir, me)
}

/// [`ancestors_trusted`] from `parent` up, for the state dir `dir` (which
/// may not exist yet: then `parent` is its nearest existing ancestor).
pub(super) fn parent_trusted(parent: &Path, dir: &Path, me: u32) -> Result<(), String> {
    let owner_ok = |uid: u32| uid == me || crate::safety::trusted_owner(uid);
    for step in parent.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        let meta = fs::symlink_metadata(step).map_err(|e| format!("{}: {e}", step.display()))?;
        if meta.file_type().is_symlink() && !owner_ok(meta.uid()) {
            return Err(format!(
                "{} (on the way to state dir {}) is a link owned by uid {}",
                step.display(),
                dir.display(),
                meta.uid()
            ));
        }
    }
    let real = fs::canonicalize(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    for step in real.ancestors() {
        let meta = fs::metadata(step).map_err(|e| format!("{}: {e}", step.display()))?;
        let sticky = meta.mode() & 0o1000 != 0;
        let others_write = meta.mode() & 0o022 != 0;
        if !owner_ok(meta.uid())
            || (others_write && !(sticky && crate::safety::trusted_owner(meta.uid())))
        {
            return Err(format!(
                "{} (above state dir {}) is owned by uid {} with mode {:o}: whoever may write \
                 it could swap the state dir for one with forged records; use a state dir \
                 whose every parent is root's (or yours) and writable by nobody else",
                step.display(),
                dir.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}
