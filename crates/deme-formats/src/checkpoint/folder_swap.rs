//! Whole-folder saves that appear all at once.
//!
//! A checkpoint folder is several files (weights, `config.json`, `deme.json`,
//! a training state) that must agree. [`FolderSave`] stages the new files in a
//! hidden sibling folder (`.{name}.saving-{pid}-{random}`) holding hard links
//! to the files the save does not rewrite, then swaps it with the target in
//! one `renameat2(RENAME_EXCHANGE)` (Linux; a plain rename when the target is
//! new) and removes the old folder. A crash at any point leaves the target
//! either wholly old or wholly new; a staging folder left behind by a killed
//! process is removed by the next save of the same folder.
//!
//! Where the exchange is not available (another OS, a filesystem without it)
//! or the target holds sub-folders (which cannot be linked), the files are
//! moved in one at a time, in the order they were written, each atomically:
//! every file is then complete, old or new, but a crash between two moves can
//! leave new weights beside old metadata. Callers write the weights first and
//! the metadata last.

use super::atomic::{check_file_name, ensure_dir, write_atomic_bytes};
use anyhow::{Context, Result, anyhow, bail};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// How a [`FolderSave`] commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapMode {
    /// Staged in a sibling folder and swapped in at once.
    Exchange,
    /// Files moved in one at a time (see the module docs).
    PerFile,
}

/// A save of a whole folder; see the module docs.
#[derive(Debug)]
pub struct FolderSave {
    target: PathBuf,
    staging: PathBuf,
    written: Vec<String>,
    removed: Vec<String>,
    mode: SwapMode,
    done: bool,
}

fn staging_prefix(name: &str) -> String {
    format!(".{name}.saving-")
}

/// Whether process `pid` is alive (Linux `/proc`; elsewhere assume it is).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Removes staging folders of `name` in `parent` left by dead processes.
fn remove_stale(parent: &Path, name: &str) {
    let prefix = staging_prefix(name);
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| p != std::process::id() && !alive(p)) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Links (or, failing that, copies) every entry of `from` into `to`. Errors
/// when `from` holds anything but regular files and symlinks.
fn link_all(from: &Path, to: &Path) -> Result<bool> {
    for e in fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))? {
        let e = e?;
        let ty = e.file_type()?;
        let dest = to.join(e.file_name());
        if ty.is_file() {
            if fs::hard_link(e.path(), &dest).is_err() {
                fs::copy(e.path(), &dest).with_context(|| {
                    format!("cannot carry {} over into the new save", e.path().display())
                })?;
            }
        } else if ty.is_symlink() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(fs::read_link(e.path())?, &dest)?;
            #[cfg(not(unix))]
            return Ok(false);
        } else {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Swaps two paths atomically. `Ok(false)` when the system cannot.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::other("path holds a NUL"))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths; the call only renames.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EXDEV | libc::EOPNOTSUPP | libc::EPERM) => {
            Ok(false)
        }
        _ => Err(err),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> io::Result<bool> {
    Ok(false)
}

/// Fsyncs a directory (best effort where unsupported).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    match fs::File::open(dir).and_then(|d| d.sync_all()) {
        Err(e)
            if !matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            return Err(anyhow!("cannot fsync {}: {e}", dir.display()));
        }
        _ => {}
    }
    let _ = dir;
    Ok(())
}

impl FolderSave {
    /// Starts a save of the folder `dir` (created with its parents when
    /// missing; a symlink to a folder saves into the folder it names).
    pub fn begin(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let target = if dir.is_symlink() {
            dir.canonicalize()
                .with_context(|| format!("cannot resolve {}", dir.display()))?
        } else {
            dir.to_path_buf()
        };
        if target.exists() && !target.is_dir() {
            bail!(
                "cannot save into {}: it exists and is not a folder",
                target.display()
            );
        }
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("cannot save into {}: no folder name", target.display()))?
            .to_string();
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        ensure_dir(&parent)?;
        remove_stale(&parent, &name);
        let staging = tempfile::Builder::new()
            .prefix(&format!("{}{}-", staging_prefix(&name), std::process::id()))
            .tempdir_in(&parent)
            .with_context(|| format!("cannot create a staging folder in {}", parent.display()))?
            .keep();
        let mut save = Self {
            target,
            staging,
            written: Vec::new(),
            removed: Vec::new(),
            mode: SwapMode::Exchange,
            done: false,
        };
        if save.target.is_dir() && !link_all(&save.target, &save.staging)? {
            save.mode = SwapMode::PerFile;
        }
        Ok(save)
    }

    /// The folder being saved.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// How the save will commit (so far).
    pub fn mode(&self) -> SwapMode {
        self.mode
    }

    /// Where to write the file `name` of the new folder (write it atomically,
    /// e.g. with [`super::write_atomic`]). Files are moved in, where they must
    /// be, in the order their paths were asked for.
    pub fn path(&mut self, name: &str) -> Result<PathBuf> {
        check_file_name(name)
            .with_context(|| format!("cannot write into {}", self.target.display()))?;
        if !self.written.iter().any(|n| n == name) {
            self.written.push(name.to_string());
        }
        Ok(self.staging.join(name))
    }

    /// Removes `name` from the new folder if it is there.
    pub fn remove(&mut self, name: &str) -> Result<()> {
        check_file_name(name)?;
        let p = self.staging.join(name);
        if p.exists() {
            fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
        self.written.retain(|n| n != name);
        self.removed.push(name.to_string());
        Ok(())
    }

    /// Makes the new folder visible and says how. On error the target is
    /// unchanged (in [`SwapMode::Exchange`]) or holds each file old or new.
    pub fn commit(mut self) -> Result<SwapMode> {
        sync_dir(&self.staging)?;
        let parent = self
            .staging
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if !self.target.exists() {
            fs::rename(&self.staging, &self.target).with_context(|| {
                format!(
                    "cannot move the new folder into place at {}",
                    self.target.display()
                )
            })?;
            self.done = true;
            sync_dir(&parent)?;
            return Ok(SwapMode::Exchange);
        }
        if self.mode == SwapMode::Exchange {
            let swapped = exchange(&self.staging, &self.target).with_context(|| {
                format!(
                    "cannot swap the new folder into place at {}",
                    self.target.display()
                )
            })?;
            if swapped {
                self.done = true;
                sync_dir(&parent)?;
                // The staging path now holds the old folder.
                let _ = fs::remove_dir_all(&self.staging);
                return Ok(SwapMode::Exchange);
            }
            self.mode = SwapMode::PerFile;
        }
        for name in &self.written {
            let from = self.staging.join(name);
            if from.exists() {
                fs::rename(&from, self.target.join(name)).with_context(|| {
                    format!("cannot move {name} into {}", self.target.display())
                })?;
            }
        }
        for name in &self.removed {
            let p = self.target.join(name);
            if p.exists() {
                fs::remove_file(&p)
                    .with_context(|| format!("cannot remove stale {}", p.display()))?;
            }
        }
        sync_dir(&self.target)?;
        self.done = true;
        let _ = fs::remove_dir_all(&self.staging);
        Ok(SwapMode::PerFile)
    }
}

impl Drop for FolderSave {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// Writes several files into `dir` (created if missing) as one save: they
/// appear together (see [`FolderSave`]). Other files already in
/// `dir` are kept. Put the weights first and `config.json`/metadata last,
/// which matters where the system cannot swap folders.
pub fn write_folder_atomic<B: AsRef<[u8]>>(
    dir: impl AsRef<Path>,
    files: &[(&str, B)],
) -> Result<()> {
    let dir = dir.as_ref();
    for (name, _) in files {
        check_file_name(name).with_context(|| format!("cannot write into {}", dir.display()))?;
    }
    let mut save = FolderSave::begin(dir)?;
    for (name, bytes) in files {
        write_atomic_bytes(save.path(name)?, bytes.as_ref())?;
    }
    save.commit().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn new_folder_appears_whole_and_no_staging_is_left() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        let mut s = FolderSave::begin(&dir).unwrap();
        write_atomic_bytes(s.path("w").unwrap(), b"weights").unwrap();
        write_atomic_bytes(s.path("config.json").unwrap(), b"{}").unwrap();
        assert!(!dir.exists(), "nothing is visible before commit");
        s.commit().unwrap();
        assert_eq!(names(&dir), ["config.json", "w"]);
        assert_eq!(names(root.path()), ["ckpt"]);
    }

    #[test]
    fn overwrite_keeps_other_files_and_replaces_written_ones() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("w"), b"old").unwrap();
        fs::write(dir.join("notes.txt"), b"mine").unwrap();
        let mut s = FolderSave::begin(&dir).unwrap();
        assert_eq!(s.mode(), SwapMode::Exchange);
        write_atomic_bytes(s.path("w").unwrap(), b"new").unwrap();
        assert_eq!(fs::read(dir.join("w")).unwrap(), b"old");
        let mode = s.commit().unwrap();
        // Linux swaps the folders (renameat2); the kill -9 test relies on it
        if cfg!(target_os = "linux") {
            assert_eq!(
                mode,
                SwapMode::Exchange,
                "this filesystem cannot swap folders"
            );
        }
        assert_eq!(fs::read(dir.join("w")).unwrap(), b"new");
        assert_eq!(fs::read(dir.join("notes.txt")).unwrap(), b"mine");
        assert_eq!(names(root.path()), ["ckpt"]);
    }

    #[test]
    fn dropped_save_changes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("w"), b"old").unwrap();
        {
            let mut s = FolderSave::begin(&dir).unwrap();
            write_atomic_bytes(s.path("w").unwrap(), b"new").unwrap();
        }
        assert_eq!(fs::read(dir.join("w")).unwrap(), b"old");
        assert_eq!(names(root.path()), ["ckpt"]);
    }

    #[test]
    fn sub_folders_fall_back_to_per_file_moves() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        fs::create_dir_all(dir.join("samples")).unwrap();
        fs::write(dir.join("samples").join("a.png"), b"png").unwrap();
        fs::write(dir.join("deme.json"), b"old").unwrap();
        let mut s = FolderSave::begin(&dir).unwrap();
        assert_eq!(s.mode(), SwapMode::PerFile);
        write_atomic_bytes(s.path("w").unwrap(), b"new").unwrap();
        s.remove("deme.json").unwrap();
        assert_eq!(s.commit().unwrap(), SwapMode::PerFile);
        assert_eq!(names(&dir), ["samples", "w"]);
        assert_eq!(fs::read(dir.join("samples").join("a.png")).unwrap(), b"png");
        assert_eq!(names(root.path()), ["ckpt"]);
    }

    #[test]
    fn stale_staging_of_a_dead_process_is_removed() {
        let root = tempfile::tempdir().unwrap();
        // Above any pid_max: never a live process.
        let stale = root.path().join(".ckpt.saving-999999999-abc");
        fs::create_dir(&stale).unwrap();
        let s = FolderSave::begin(root.path().join("ckpt")).unwrap();
        assert!(!stale.exists());
        s.commit().unwrap();
        assert_eq!(names(root.path()), ["ckpt"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_folder_stays_a_symlink() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut s = FolderSave::begin(&link).unwrap();
        write_atomic_bytes(s.path("w").unwrap(), b"x").unwrap();
        s.commit().unwrap();
        assert!(link.is_symlink());
        assert_eq!(fs::read(real.join("w")).unwrap(), b"x");
    }

    #[test]
    fn folder_write_creates_dir_and_all_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a").join("b");
        write_folder_atomic(
            &out,
            &[
                ("w.safetensors", vec![1u8, 2]),
                ("config.json", b"{}".to_vec()),
            ],
        )
        .unwrap();
        assert_eq!(names(&out), ["config.json", "w.safetensors"]);
        assert_eq!(fs::read(out.join("w.safetensors")).unwrap(), [1, 2]);
        assert!(write_folder_atomic(&out, &[("../escape", b"x")]).is_err());
        assert!(!dir.path().join("a").join("escape").exists());
    }
}
