//! Checks on where a job will write, made before the job's work, so that hours of
//! training or search are never computed only to fail at the final write, and a
//! model folder is never replaced by accident.

use crate::engine::store::{META_FILE, TRAIN_STATE_FILE, WEIGHTS_FILE};
use anyhow::{Context, Result, bail};
use std::path::Path;

/// Fails unless `dir` is, or can be made, a folder this process can write into.
/// Nothing is left behind: a missing folder is not created here (a job that fails
/// later must not leave an empty one); the deepest existing part of the path must
/// be a folder that takes a probe file, written and removed at once.
pub fn ensure_writable_folder(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("{} is a file, not a folder", dir.display());
    }
    let existing = deepest_existing(dir);
    if !existing.is_dir() {
        bail!(
            "cannot make the output folder {}: {} is not a folder",
            dir.display(),
            existing.display()
        );
    }
    let probe = existing.join(format!(".deme-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| {
        format!(
            "cannot write the output folder {} (into {})",
            dir.display(),
            existing.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The longest leading part of `path` that exists (links not followed at its end),
/// `.` when none does: where a folder would be made, and what a check must resolve.
pub fn deepest_existing(path: &Path) -> &Path {
    let mut existing = path;
    while std::fs::symlink_metadata(existing).is_err() {
        existing = match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => return Path::new("."),
        };
    }
    existing
}

/// Fails unless `file` can be written: its folder is writable and the path is not a
/// folder or another non-regular file.
pub fn ensure_writable_file(file: &Path) -> Result<()> {
    if let Ok(m) = std::fs::symlink_metadata(file)
        && !m.is_file()
    {
        bail!("{} exists and is not a regular file", file.display());
    }
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    ensure_writable_folder(dir)
}

/// The first file in `dir` that makes it a model folder (weights, config, training
/// metadata or train state), if any.
pub fn model_file_in(dir: &Path) -> Option<&'static str> {
    [WEIGHTS_FILE, "config.json", META_FILE, TRAIN_STATE_FILE]
        .into_iter()
        .find(|f| dir.join(f).exists())
}

/// Refuses to start a fresh run in `dir` when it already holds a model, so that a
/// finished model (the shipped base, an expert) is never replaced silently; `how`
/// says what the user can do instead.
pub fn refuse_existing_model(dir: &Path, how: &str) -> Result<()> {
    if let Some(f) = model_file_in(dir) {
        bail!("{} already holds a model ({f}): {how}", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_checked_before_the_work() {
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join("a/b");
        ensure_writable_folder(&fresh).unwrap();
        assert!(!fresh.exists(), "nothing is made before the job writes");
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "no probe left"
        );
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = ensure_writable_folder(&file).unwrap_err().to_string();
        assert!(e.contains("is a file"), "{e}");
        let e = ensure_writable_folder(&file.join("below"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a folder"), "{e}");
        assert!(ensure_writable_file(&fresh.join("out.png")).is_ok());
        let folder = tmp.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        assert!(
            ensure_writable_file(&folder).is_err(),
            "a folder is not a file"
        );
    }

    #[test]
    fn a_model_folder_is_refused_naming_what_makes_it_one() {
        let tmp = tempfile::tempdir().unwrap();
        refuse_existing_model(tmp.path(), "x").unwrap();
        std::fs::write(tmp.path().join("config.json"), b"{}").unwrap();
        let e = refuse_existing_model(tmp.path(), "pass --overwrite")
            .unwrap_err()
            .to_string();
        assert!(e.contains("(config.json): pass --overwrite"), "{e}");
    }
}
