//! The file-system seam of the log.
//!
//! Every byte the log stores goes through [`Storage`] and [`StorageFile`]: the
//! real implementation, [`FileStorage`], maps them onto the operating system;
//! the in-memory one, [`MemStorage`](super::memory::MemStorage), keeps files in
//! memory and can simulate a crash: unsynced data is dropped or torn, directory
//! operations that were not made durable by [`Storage::sync_dir`] may be lost,
//! and bits may flip. Recovery is tested against the latter by model-based
//! property tests.
//!
//! # Obligations of an implementation
//!
//! - [`StorageFile::sync`] returns only once every byte written to the file
//!   before the call would survive a crash of the machine. An error from it is
//!   fatal: the caller must not retry, since the kernel may already have dropped
//!   the dirty pages (see "fsyncgate"); the log directory is taken offline.
//! - Creating, renaming or removing a file is durable only after
//!   [`Storage::sync_dir`] on its parent directory returned.
//! - [`Storage::rename`] replaces the destination atomically.
//! - Reads see every write made before them, synced or not.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How [`Storage::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file; fail with [`io::ErrorKind::NotFound`] if absent.
    Existing,
    /// Create the file if it does not exist; keep its content if it does.
    CreateOrOpen,
    /// Create a new, empty file, replacing any file of the same name.
    Truncate,
}

/// A file of the log: positional reads and writes, truncation and sync.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// The file's current length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read
    /// (fewer only at the end of the file).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;

    /// Writes all of `data` at `pos`, extending the file if needed.
    fn write_at(&self, data: &[u8], pos: u64) -> io::Result<()>;

    /// Cuts the file to `len` bytes.
    fn truncate(&self, len: u64) -> io::Result<()>;

    /// Makes every write so far durable (`fdatasync`). See the module docs:
    /// an error is fatal and must not be retried.
    fn sync(&self) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `pos`, or fails with
    /// [`io::ErrorKind::UnexpectedEof`].
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], pos + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("wanted {} bytes at {pos}, the file ends earlier", buf.len()),
                ));
            }
            done += n;
        }
        Ok(())
    }
}

/// A handle to an open file.
pub type FileRef = Arc<dyn StorageFile>;

/// A directory tree the log lives in. See the module docs for the obligations.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Names of the entries of a directory (files and directories), unsorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> bool;

    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef>;

    /// Renames `from` to `to`, atomically replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes a directory and everything below it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Makes the creations, renames and removals of entries of `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Writes `data` to `path` atomically and durably: a temporary file is
    /// written and synced, renamed over `path`, and the directory is synced.
    fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let tmp = tmp_path(path);
        let file = self.open(&tmp, OpenMode::Truncate)?;
        file.write_at(data, 0)?;
        file.sync()?;
        drop(file);
        self.rename(&tmp, path)?;
        self.sync_dir(parent(path))
    }

    /// Reads a whole file.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = self.open(path, OpenMode::Existing)?;
        let len = usize::try_from(file.len()?).map_err(|_| io::Error::other("file too large to read into memory"))?;
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
}

/// The temporary name [`Storage::write_atomic`] writes to before renaming.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// The parent directory of a path, or `.` for a bare name.
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// [`Storage`] on the operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileStorage;

#[derive(Debug)]
struct OsFile(std::fs::File);

impl StorageFile for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, pos)
    }

    fn write_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, data, pos)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for FileStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true);
        match mode {
            OpenMode::Existing => opts.write(true),
            OpenMode::CreateOrOpen => opts.write(true).create(true),
            OpenMode::Truncate => opts.write(true).create(true).truncate(true),
        };
        Ok(Arc::new(OsFile(opts.open(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    #[allow(clippy::disallowed_methods)] // a directory is synced through its handle; this is the seam
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}
