//! Files that hold a credential: written to a temporary file in the same directory with mode
//! 0600 and renamed over the target, so a reader sees the old content or the new, never a
//! torn write, and nobody but the owner ever sees either.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Atomically replaces `path` with `contents`, mode 0600.
///
/// # Errors
/// The directory is not writable, or the write, sync or rename fails (the temporary file is
/// then removed).
pub fn replace(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_sibling(path);
    let written = write_new(&temporary, contents).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Removes `path` if it exists.
///
/// # Errors
/// Removal fails for another reason than the file's absence.
pub fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// `.NAME.tmp-RANDOM` next to `path`: same file system, so the rename is atomic.
fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "credential".into(), |n| n.to_string_lossy());
    let random = uuid::Uuid::new_v4().simple();
    path.with_file_name(format!(".{name}.tmp-{random}"))
}

fn write_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tokenvend-private-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_replaced_file_has_the_new_contents_mode_0600_and_no_leftovers() {
        let dir = scratch();
        let path = dir.join("token");
        std::fs::write(&path, "old").unwrap();
        replace(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn removing_a_missing_file_is_not_an_error() {
        let dir = scratch();
        remove(&dir.join("absent")).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
