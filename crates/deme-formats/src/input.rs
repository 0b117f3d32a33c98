//! The one way outside files are opened: regular files only, refused at once
//! otherwise (a FIFO, a socket, a device or a folder where a file is expected would
//! block in `open` or read without end), and read whole only up to a stated size.

use anyhow::{Context, Result, bail};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;

/// Largest text file (config, metadata, recipe, curve) read whole.
pub const MAX_TEXT_BYTES: u64 = 64 << 20;

/// Opens `path` for reading when it is a regular file (symbolic links followed).
/// The open never blocks: on Unix it is non-blocking, and what it opened is then
/// checked to be a regular file before anything is read.
pub fn open_regular(path: &Path) -> Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "{} is not a regular file (it is {}); give a file",
            path.display(),
            kind_of(&meta)
        );
    }
    Ok(file)
}

/// Reads the regular file `path` whole, refusing it when larger than `max_bytes`.
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let file = open_regular(path)?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    if len > max_bytes {
        bail!(
            "{} is {len} bytes, more than the {max_bytes} this kind of file may hold",
            path.display()
        );
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > max_bytes {
        bail!(
            "{} grew past {max_bytes} bytes while being read",
            path.display()
        );
    }
    Ok(bytes)
}

/// Reads the regular text file `path` (UTF-8, at most [`MAX_TEXT_BYTES`]); a
/// leading byte-order mark, as some editors write, is dropped.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = read_regular(path, MAX_TEXT_BYTES)?;
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    String::from_utf8(body.to_vec())
        .with_context(|| format!("{} is not UTF-8 text", path.display()))
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    if meta.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    "not a file"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_and_others_refused_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("c.json");
        std::fs::write(&f, b"\xEF\xBB\xBF{\"a\": 1}").unwrap();
        assert_eq!(read_text(&f).unwrap(), "{\"a\": 1}");
        assert_eq!(read_regular(&f, 100).unwrap().len(), 11);
        let e = read_regular(&f, 4).unwrap_err().to_string();
        assert!(e.contains("11 bytes, more than the 4"), "{e}");
        let e = open_regular(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("a folder"), "{e}");
        let e = read_text(&tmp.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot open"), "{e}");
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(read_text(&f).unwrap_err().to_string().contains("not UTF-8"));
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_a_device_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_text(&fifo).unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
        let e = read_regular(Path::new("/dev/zero"), 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a device"), "{e}");
    }
}
