//! Atomic file writes: a reader (or a crash) sees the old file or the new
//! one, never a half-written mix.
//!
//! A write goes to a temporary file in the target's directory (so the final
//! rename never crosses a filesystem), is flushed and fsynced, renamed over
//! the target, and the directory is fsynced so the rename itself is durable.
//! If anything fails before the rename, the temporary file is removed and
//! the old file is untouched.
//!
//! # Folders
//!
//! A whole folder (weights, `config.json`, `deme.json`) is saved with
//! `folder_swap::FolderSave`: staged beside the target and swapped in at
//! once, so a crash leaves it wholly old or wholly new; its
//! `write_folder_atomic` is the simple form of that.

use anyhow::{Context, Result, anyhow, bail};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The directory a file path lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Fsyncs a directory so renames inside it survive a crash (no-op off unix).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        match File::open(dir).and_then(|d| d.sync_all()) {
            // Some filesystems cannot fsync directories; the rename is done.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
                ) =>
            {
                Ok(())
            }
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Writes `path` atomically: `write` fills a buffered temporary file in the
/// same directory, which is then flushed, fsynced and renamed over `path`,
/// and the directory is fsynced.
///
/// On any error the previous content of `path` (if any) is unchanged and the
/// temporary file is removed; the error says which step failed, on which
/// path, with the OS error (e.g. "No space left on device"). An existing
/// file's permissions are kept; a new file gets the usual `0o666 & !umask`.
pub fn write_atomic(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<()> {
    let path = path.as_ref();
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("cannot write {}: the path has no file name", path.display()))?;
    if path.is_dir() {
        bail!("cannot write {}: it is a directory", path.display());
    }

    let prefix = format!(".{}.", name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder.tempfile_in(&dir).map_err(|e| {
        anyhow!(
            "cannot create a temporary file in {} to write {}: {e}",
            dir.display(),
            path.display()
        )
    })?;
    let (file, temp_path) = tmp.into_parts();
    if let Ok(existing) = std::fs::metadata(path) {
        // Best effort: keep the permissions the user gave the old file.
        let _ = std::fs::set_permissions(&temp_path, existing.permissions());
    }

    // Messages are self-contained (they include the OS error), so they read
    // right however the caller prints them.
    let fail = |step: &str, e: &dyn std::fmt::Display| {
        anyhow!(
            "{step} while writing {} (via temporary file {}): {e}; the previous file is untouched",
            path.display(),
            temp_path.display()
        )
    };
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    write(&mut writer).map_err(|e| fail("error", &e))?;
    let file = writer
        .into_inner()
        .map_err(|e| fail("flush failed", e.error()))?;
    file.sync_all().map_err(|e| fail("fsync failed", &e))?;
    drop(file);

    // On failure `persist` hands the temp path back inside the error, and
    // dropping it deletes the temporary file.
    temp_path.persist(path).map_err(|e| {
        anyhow!(
            "cannot rename the temporary file over {}: {}; the previous file is untouched",
            path.display(),
            e.error
        )
    })?;
    sync_dir(&dir).map_err(|e| {
        anyhow!(
            "wrote {} but could not fsync its directory {}: {e}; the new file may not survive a crash",
            path.display(),
            dir.display()
        )
    })?;
    Ok(())
}

/// Writes `bytes` to `path` atomically (see [`write_atomic`]).
pub fn write_atomic_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Creates `dir` (and its parents) if missing, with an error naming it.
pub fn ensure_dir(dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        bail!(
            "cannot save into {}: it exists and is not a folder",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create folder {}", dir.display()))?;
    // Make the new folder's own directory entry durable (best effort).
    let _ = sync_dir(&parent_dir(dir));
    Ok(())
}

/// Checks that `name` is a plain file name (no separators, not `.`/`..`).
pub(crate) fn check_file_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && !name.contains('\0');
    if !plain {
        bail!("{name:?} is not a plain file name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic_bytes(&p, b"old").unwrap();
        write_atomic_bytes(&p, b"new content").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new content");
        assert_eq!(entries(dir.path()), ["a.bin"]);
    }

    #[test]
    fn failing_writer_leaves_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("weights.safetensors");
        write_atomic_bytes(&p, b"precious").unwrap();
        let err = write_atomic(&p, |w| {
            w.write_all(&[7u8; 4096])?;
            w.flush()?; // make sure partial data really hit the temp file
            Err(io::Error::other("simulated: No space left on device"))
        })
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("weights.safetensors"), "{msg}");
        assert!(msg.contains("No space left on device"), "{msg}");
        // The plain message carries the OS error too.
        assert!(err.to_string().contains("No space left"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"precious");
        assert_eq!(entries(dir.path()), ["weights.safetensors"]);
    }

    #[test]
    fn failing_writer_creates_nothing_when_target_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new.bin");
        assert!(write_atomic(&p, |_| Err(io::Error::other("boom"))).is_err());
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope").join("x.bin");
        let msg = format!("{:#}", write_atomic_bytes(&p, b"x").unwrap_err());
        assert!(msg.contains("nope"), "{msg}");
        let msg = format!("{:#}", write_atomic_bytes(dir.path(), b"x").unwrap_err());
        assert!(msg.contains("directory"), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn permissions_are_not_temp_file_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic_bytes(&p, b"1").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o600, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic_bytes(&p, b"2").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
}
