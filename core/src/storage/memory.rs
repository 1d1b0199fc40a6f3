//! An in-memory [`Storage`] that can simulate a crash, for tests.
//!
//! [`MemStorage`] keeps a directory tree in memory. Files are inodes shared by
//! the handles open on them; directories map names to files or
//! subdirectories. Every file remembers two contents: `current`, what reads
//! see, and `durable`, its content as of its last [`StorageFile::sync`]. Every
//! directory remembers its durable listing (as of its last
//! [`Storage::sync_dir`]) and a journal of the entry changes made since then:
//! creating a file or directory, renaming, removing a file or a directory tree.
//! A rename within one directory is a single journal entry. Opening an
//! existing file with [`OpenMode::Truncate`] empties that same inode, like
//! `O_TRUNC`, and changes no directory.
//!
//! # The crash model
//!
//! [`MemStorage::crash`] simulates a power loss followed by a reboot; all
//! randomness comes from the seed given to [`MemStorage::new`], so a run is
//! reproducible. Starting from the root:
//!
//! 1. Each reachable directory gets its durable listing with a random prefix
//!    of its journal applied: in order, possibly none of it, possibly all of
//!    it. Metadata journaling is ordered, as on ext4, so a later change never
//!    survives without the earlier ones of the same directory. A rename across
//!    directories is two journal entries, one in each, so it is atomic only
//!    once both directories are synced. A removed subtree that comes back
//!    comes back with its own durable listing and journal prefix.
//! 2. Each surviving file: if `current` starts with `durable` (it was only
//!    appended to since its last sync), it becomes `durable` plus a random
//!    prefix of the appended bytes, the length chosen uniformly in
//!    `0..=appended`. With [`CrashFaults::torn_garbage`], when something was
//!    appended, with probability 1/2 the last up-to-16 bytes of that kept
//!    prefix are replaced by random bytes (a torn sector); synced bytes are
//!    never touched. Otherwise (truncated or overwritten since its last sync)
//!    it becomes either `durable` or `current`, each with probability 1/2.
//! 3. [`CrashFaults::bit_flips`] times, a random file among the survivors whose
//!    name ends with one of [`CrashFaults::flip_suffixes`] and whose synced
//!    region is not empty gets one random bit flipped inside that region (the
//!    first `min(durable length, new length)` bytes). Each flip is reported as
//!    a [`BitFlip`]; the same file may be hit several times.
//!
//! Afterwards every file's `durable` equals its `current` and every journal is
//! empty. Handles opened before the crash are stale: every operation on them
//! fails with [`io::ErrorKind::StaleNetworkFileHandle`] and changes nothing.
//!
//! # Paths
//!
//! Paths are normalised simply: `.` is dropped, `..` goes up (never above the
//! root), and a relative path means the same as the absolute one, so `data/x`
//! and `/data/x` name the same file. There are no symlinks. Paths that
//! [`MemStorage`] returns ([`MemStorage::file_names`], [`BitFlip::path`]) are
//! absolute. Renaming directories is not supported.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, ErrorKind};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::io::{FileRef, OpenMode, Storage, StorageFile};

/// The faults [`MemStorage::crash`] injects on top of losing unsynced data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashFaults {
    /// Whether the kept tail of a file appended to since its last sync may end,
    /// with probability 1/2, in up to 16 random bytes (a torn sector).
    pub torn_garbage: bool,
    /// How many single bits to flip in the synced regions of the files that
    /// match [`flip_suffixes`](Self::flip_suffixes).
    pub bit_flips: u32,
    /// The file-name endings of the files bit flips may hit, e.g. `".log"`.
    pub flip_suffixes: Vec<String>,
}

impl Default for CrashFaults {
    /// No torn sectors, no bit flips, and `.log` files as the flip targets.
    fn default() -> Self {
        let flip_suffixes = vec![".log".to_owned()];
        Self { torn_garbage: false, bit_flips: 0, flip_suffixes }
    }
}

/// A bit that [`MemStorage::crash`] flipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitFlip {
    /// The file, as an absolute path.
    pub path: PathBuf,
    /// The position of the byte holding the flipped bit.
    pub position: u64,
}

/// Locks a mutex. A poisoned lock means a test already panicked; the data is
/// still consistent enough to carry on and let that panic be reported.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn error(kind: ErrorKind, path: &Path, what: &str) -> io::Error {
    io::Error::new(kind, format!("{}: {what}", path.display()))
}

/// The error the OS would give, e.g. "/a/b: entity not found".
fn fail<T>(kind: ErrorKind, path: &Path) -> io::Result<T> {
    Err(error(kind, path, &kind.to_string()))
}

/// The content of a file: what reads see, and what surely survives a crash.
#[derive(Default)]
struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Default)]
struct Inode {
    data: Mutex<FileData>,
}

/// An index into [`State::dirs`].
type DirId = usize;

#[derive(Clone)]
enum Entry {
    File(Arc<Inode>),
    Dir(DirId),
}

type Listing = BTreeMap<String, Entry>;

/// Changes to one directory listing that a crash keeps all or none of: a name
/// is set to an entry, or removed with `None`.
type Op = Vec<(String, Option<Entry>)>;

fn apply(listing: &mut Listing, op: &Op) {
    for (name, entry) in op {
        match entry {
            Some(entry) => listing.insert(name.clone(), entry.clone()),
            None => listing.remove(name),
        };
    }
}

#[derive(Default)]
struct Dir {
    current: Listing,
    durable: Listing,
    /// The changes since the last `sync_dir`, oldest first.
    journal: Vec<Op>,
}

impl Dir {
    fn change(&mut self, op: Op) {
        apply(&mut self.current, &op);
        self.journal.push(op);
    }
}

struct State {
    /// Every directory since the last crash, linked or removed.
    dirs: Vec<Dir>,
    root: DirId,
    rng: StdRng,
}

impl State {
    fn new_dir(&mut self) -> DirId {
        self.dirs.push(Dir::default());
        self.dirs.len() - 1
    }

    /// The directory named by `names`, below the root.
    fn resolve_dir(&self, names: &[String], path: &Path) -> io::Result<DirId> {
        let mut id = self.root;
        for name in names {
            match self.dirs[id].current.get(name) {
                Some(Entry::Dir(sub)) => id = *sub,
                Some(Entry::File(_)) => return fail(ErrorKind::NotADirectory, path),
                None => return fail(ErrorKind::NotFound, path),
            }
        }
        Ok(id)
    }

    /// The parent directory of `path`, its last name, and what it names.
    fn locate(&self, path: &Path) -> io::Result<(DirId, String, Option<Entry>)> {
        let mut names = components(path)?;
        let Some(name) = names.pop() else {
            return Err(error(ErrorKind::InvalidInput, path, "the root directory"));
        };
        let dir = self.resolve_dir(&names, path)?;
        let entry = self.dirs[dir].current.get(&name).cloned();
        Ok((dir, name, entry))
    }

    fn file(&self, path: &Path) -> io::Result<Arc<Inode>> {
        match self.locate(path)?.2 {
            Some(Entry::File(inode)) => Ok(inode),
            Some(Entry::Dir(_)) => fail(ErrorKind::IsADirectory, path),
            None => fail(ErrorKind::NotFound, path),
        }
    }
}

/// The normalised names of a path below the root.
fn components(path: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => drop(names.pop()),
            Component::Normal(name) => match name.to_str() {
                Some(name) => names.push(name.to_owned()),
                None => return Err(error(ErrorKind::InvalidInput, path, "not UTF-8")),
            },
        }
    }
    Ok(names)
}

struct Shared {
    state: Mutex<State>,
    /// Bumped by every crash; handles from an older epoch are stale.
    epoch: AtomicU64,
    /// How many more syncs succeed; `None` for no limit.
    syncs_left: Mutex<Option<u64>>,
}

impl Shared {
    fn take_sync(&self) -> io::Result<()> {
        let mut left = lock(&self.syncs_left);
        if *left == Some(0) {
            return Err(io::Error::other("injected fsync failure"));
        }
        *left = left.map(|n| n - 1);
        Ok(())
    }
}

/// A [`Storage`] in memory that can simulate a crash; see the module docs for
/// the crash model and how paths are read. Clones share the same tree.
#[derive(Clone)]
pub struct MemStorage {
    shared: Arc<Shared>,
}

impl fmt::Debug for MemStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let epoch = self.shared.epoch.load(Ordering::SeqCst);
        f.debug_struct("MemStorage").field("crashes", &epoch).finish_non_exhaustive()
    }
}

impl MemStorage {
    /// An empty storage (just the root directory) whose crashes draw their
    /// randomness from `seed`.
    pub fn new(seed: u64) -> Self {
        let dirs = vec![Dir::default()];
        let state = State { dirs, root: 0, rng: StdRng::seed_from_u64(seed) };
        let state = Mutex::new(state);
        let shared = Shared { state, epoch: AtomicU64::new(0), syncs_left: Mutex::new(None) };
        Self { shared: Arc::new(shared) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// Makes [`StorageFile::sync`] and [`Storage::sync_dir`] fail with
    /// "injected fsync failure" after `n` more successful calls (of either
    /// kind, counted together); `None` lifts the limit. A failed sync makes
    /// nothing durable.
    pub fn fail_syncs_after(&self, n: Option<u64>) {
        *lock(&self.shared.syncs_left) = n;
    }

    /// Simulates a power loss and reboot as described in the module docs, and
    /// returns the bits it flipped. Handles opened before are stale afterwards.
    pub fn crash(&self, faults: CrashFaults) -> Vec<BitFlip> {
        let mut guard = self.state();
        let state = &mut *guard;
        // Bumped before any inode is read: a write that already holds an
        // inode's lock lands before the crash, any later one fails.
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        let old = std::mem::take(&mut state.dirs);
        let mut rebuild = Rebuild {
            old: &old,
            rng: &mut state.rng,
            torn_garbage: faults.torn_garbage,
            dirs: Vec::new(),
            inodes: HashMap::new(),
            files: Vec::new(),
        };
        state.root = rebuild.dir(state.root, Path::new("/"));
        let Rebuild { dirs, files, .. } = rebuild;
        state.dirs = dirs;

        let matches = |path: &Path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            faults.flip_suffixes.iter().any(|suffix| name.ends_with(suffix.as_str()))
        };
        let targets: Vec<_> = files.iter().filter(|(p, _, synced)| *synced > 0 && matches(p)).collect();
        let mut flips = Vec::new();
        for _ in 0..faults.bit_flips {
            if targets.is_empty() {
                break;
            }
            let (path, inode, synced) = targets[state.rng.random_range(0..targets.len())];
            let position = state.rng.random_range(0..*synced);
            let mask = 1u8 << state.rng.random_range(0..8);
            let mut data = lock(&inode.data);
            data.current[position] ^= mask;
            data.durable[position] ^= mask;
            flips.push(BitFlip { path: path.clone(), position: position as u64 });
        }
        flips
    }

    /// Every file, as absolute paths, sorted.
    pub fn file_names(&self) -> Vec<PathBuf> {
        let state = self.state();
        let mut names = Vec::new();
        let mut todo = vec![(state.root, PathBuf::from("/"))];
        while let Some((id, path)) = todo.pop() {
            for (name, entry) in &state.dirs[id].current {
                match entry {
                    Entry::File(_) => names.push(path.join(name)),
                    Entry::Dir(sub) => todo.push((*sub, path.join(name))),
                }
            }
        }
        names.sort();
        names
    }

    /// The current content of a file, or `None` if there is no file at `path`.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let inode = self.state().file(path).ok()?;
        let content = lock(&inode.data).current.clone();
        Some(content)
    }

    /// Flips bit `bit` (0 to 7) of byte `byte` of a file, in both its current
    /// and its durable content (where they are long enough), to corrupt it on
    /// purpose.
    pub fn flip_bit(&self, path: &Path, byte: u64, bit: u8) -> io::Result<()> {
        let inode = self.state().file(path)?;
        let mut data = lock(&inode.data);
        let data = &mut *data;
        let pos = usize::try_from(byte).unwrap_or(usize::MAX);
        if bit >= 8 || (pos >= data.current.len() && pos >= data.durable.len()) {
            return Err(error(ErrorKind::InvalidInput, path, "no such bit"));
        }
        for content in [&mut data.current, &mut data.durable] {
            if let Some(b) = content.get_mut(pos) {
                *b ^= 1 << bit;
            }
        }
        Ok(())
    }

    /// Removes the entry at `path`, which must be a directory if `dir`, else a
    /// file.
    fn unlink(&self, path: &Path, dir: bool) -> io::Result<()> {
        let mut state = self.state();
        match state.locate(path)? {
            (parent, name, Some(Entry::Dir(_))) if dir => state.dirs[parent].change(vec![(name, None)]),
            (parent, name, Some(Entry::File(_))) if !dir => state.dirs[parent].change(vec![(name, None)]),
            (_, _, Some(Entry::Dir(_))) => return fail(ErrorKind::IsADirectory, path),
            (_, _, Some(Entry::File(_))) => return fail(ErrorKind::NotADirectory, path),
            (_, _, None) => return fail(ErrorKind::NotFound, path),
        }
        Ok(())
    }
}

/// The tree after a crash, built from the one before.
struct Rebuild<'a> {
    old: &'a [Dir],
    rng: &'a mut StdRng,
    torn_garbage: bool,
    dirs: Vec<Dir>,
    /// New inodes by old inode, so that two links to one file stay one file.
    inodes: HashMap<*const Inode, Arc<Inode>>,
    /// Every surviving link: path, new inode, length of its synced region.
    files: Vec<(PathBuf, Arc<Inode>, usize)>,
}

impl Rebuild<'_> {
    /// Rebuilds the directory `id` of the old tree (rule 1 of the module
    /// docs); returns its new id.
    fn dir(&mut self, id: DirId, path: &Path) -> DirId {
        let old = &self.old[id];
        let mut listing = old.durable.clone();
        let kept = self.rng.random_range(0..=old.journal.len());
        for op in &old.journal[..kept] {
            apply(&mut listing, op);
        }
        for (name, entry) in &mut listing {
            *entry = match entry {
                Entry::Dir(sub) => Entry::Dir(self.dir(*sub, &path.join(name))),
                Entry::File(inode) => Entry::File(self.file(inode, path.join(name))),
            };
        }
        // Its subdirectories were pushed already: the next index is free.
        let id = self.dirs.len();
        let dir = Dir { current: listing.clone(), durable: listing, journal: Vec::new() };
        self.dirs.push(dir);
        id
    }

    fn file(&mut self, old: &Arc<Inode>, path: PathBuf) -> Arc<Inode> {
        let data = lock(&old.data);
        let inode = match self.inodes.get(&Arc::as_ptr(old)) {
            Some(inode) => Arc::clone(inode),
            None => {
                let content = self.survivor(&data);
                let new = FileData { current: content.clone(), durable: content };
                let inode = Arc::new(Inode { data: Mutex::new(new) });
                self.inodes.insert(Arc::as_ptr(old), Arc::clone(&inode));
                inode
            }
        };
        let synced = data.durable.len().min(lock(&inode.data).current.len());
        self.files.push((path, Arc::clone(&inode), synced));
        inode
    }

    /// What of a file survives a crash: rule 2 of the module docs.
    fn survivor(&mut self, data: &FileData) -> Vec<u8> {
        let FileData { current, durable } = data;
        let Some(appended) = current.strip_prefix(durable.as_slice()) else {
            let pick = if self.rng.random_bool(0.5) { durable } else { current };
            return pick.clone();
        };
        let kept = self.rng.random_range(0..=appended.len());
        let mut content = current[..durable.len() + kept].to_vec();
        if self.torn_garbage && !appended.is_empty() && self.rng.random_bool(0.5) {
            let end = content.len();
            self.rng.fill(&mut content[end - kept.min(16)..]);
        }
        content
    }
}

impl Storage for MemStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let names = components(path)?;
        let mut state = self.state();
        let mut id = state.root;
        for (i, name) in names.iter().enumerate() {
            id = match state.dirs[id].current.get(name) {
                Some(Entry::Dir(sub)) => *sub,
                Some(Entry::File(_)) if i + 1 == names.len() => {
                    return fail(ErrorKind::AlreadyExists, path);
                }
                Some(Entry::File(_)) => return fail(ErrorKind::NotADirectory, path),
                None => {
                    let sub = state.new_dir();
                    state.dirs[id].change(vec![(name.clone(), Some(Entry::Dir(sub)))]);
                    sub
                }
            };
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.state();
        let id = state.resolve_dir(&components(path)?, path)?;
        Ok(state.dirs[id].current.keys().cloned().collect())
    }

    fn exists(&self, path: &Path) -> bool {
        match components(path) {
            Ok(names) => names.is_empty() || matches!(self.state().locate(path), Ok((_, _, Some(_)))),
            Err(_) => false,
        }
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let mut state = self.state();
        let (dir, name, entry) = state.locate(path)?;
        let inode = match (entry, mode) {
            (Some(Entry::Dir(_)), _) => return fail(ErrorKind::IsADirectory, path),
            (Some(Entry::File(inode)), OpenMode::Truncate) => {
                lock(&inode.data).current.clear();
                inode
            }
            (Some(Entry::File(inode)), _) => inode,
            (None, OpenMode::Existing) => return fail(ErrorKind::NotFound, path),
            (None, _) => {
                let inode = Arc::new(Inode::default());
                state.dirs[dir].change(vec![(name, Some(Entry::File(Arc::clone(&inode))))]);
                inode
            }
        };
        let shared = Arc::clone(&self.shared);
        let epoch = shared.epoch.load(Ordering::SeqCst);
        Ok(Arc::new(MemFile { shared, inode, epoch, path: path.to_owned() }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        let (from_dir, from_name, entry) = state.locate(from)?;
        let (to_dir, to_name, target) = state.locate(to)?;
        let inode = match entry {
            Some(Entry::File(inode)) => inode,
            Some(Entry::Dir(_)) => {
                return Err(error(ErrorKind::Unsupported, from, "renaming a directory"));
            }
            None => return fail(ErrorKind::NotFound, from),
        };
        if let Some(Entry::Dir(_)) = target {
            return fail(ErrorKind::IsADirectory, to);
        }
        let link = (to_name, Some(Entry::File(inode)));
        let unlink = (from_name, None);
        if from_dir != to_dir {
            state.dirs[to_dir].change(vec![link]);
            state.dirs[from_dir].change(vec![unlink]);
        } else if link.0 != unlink.0 {
            state.dirs[to_dir].change(vec![unlink, link]);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.unlink(path, false)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.unlink(path, true)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        let id = state.resolve_dir(&components(path)?, path)?;
        self.shared.take_sync()?;
        let dir = &mut state.dirs[id];
        dir.durable.clone_from(&dir.current);
        dir.journal.clear();
        Ok(())
    }
}

/// A handle on a file of a [`MemStorage`].
struct MemFile {
    shared: Arc<Shared>,
    inode: Arc<Inode>,
    /// The storage's epoch when opened; the handle is stale after a crash.
    epoch: u64,
    path: PathBuf,
}

impl fmt::Debug for MemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemFile").field("path", &self.path).finish_non_exhaustive()
    }
}

impl MemFile {
    fn data(&self) -> io::Result<MutexGuard<'_, FileData>> {
        let data = lock(&self.inode.data);
        if self.shared.epoch.load(Ordering::SeqCst) != self.epoch {
            let what = "stale handle: the storage crashed since the file was opened";
            return Err(error(ErrorKind::StaleNetworkFileHandle, &self.path, what));
        }
        Ok(data)
    }

    fn index(&self, pos: u64) -> io::Result<usize> {
        usize::try_from(pos).map_err(|_| error(ErrorKind::InvalidInput, &self.path, "file too large"))
    }
}

impl StorageFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.data()?.current.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let data = self.data()?;
        let start = usize::try_from(pos).unwrap_or(usize::MAX).min(data.current.len());
        let n = buf.len().min(data.current.len() - start);
        buf[..n].copy_from_slice(&data.current[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, bytes: &[u8], pos: u64) -> io::Result<()> {
        if bytes.is_empty() {
            return self.data().map(drop); // like pwrite: no change of length
        }
        let start = self.index(pos)?;
        let end = self.index(pos.saturating_add(bytes.len() as u64))?;
        let mut data = self.data()?;
        if data.current.len() < end {
            data.current.resize(end, 0);
        }
        data.current[start..end].copy_from_slice(bytes);
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let len = self.index(len)?;
        self.data()?.current.resize(len, 0);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut data = self.data()?;
        self.shared.take_sync()?;
        let FileData { current, durable } = &mut *data;
        durable.clone_from(current);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const SEEDS: u64 = 200;

    fn p(path: &str) -> &Path {
        Path::new(path)
    }

    fn kind<T>(result: io::Result<T>) -> Option<ErrorKind> {
        result.err().map(|e| e.kind())
    }

    /// A storage holding the durable directory `/d`.
    fn storage(seed: u64) -> io::Result<MemStorage> {
        let mem = MemStorage::new(seed);
        mem.create_dir_all(p("/d"))?;
        mem.sync_dir(p("/"))?;
        Ok(mem)
    }

    /// Creates `path` holding `synced` then the unsynced `appended`; syncs `/d`.
    fn file(mem: &MemStorage, path: &str, synced: &[u8], appended: &[u8]) -> io::Result<FileRef> {
        let file = mem.open(p(path), OpenMode::Truncate)?;
        file.write_at(synced, 0)?;
        file.sync()?;
        mem.sync_dir(p("/d"))?;
        file.write_at(appended, synced.len() as u64)?;
        Ok(file)
    }

    fn torn() -> CrashFaults {
        CrashFaults { torn_garbage: true, ..CrashFaults::default() }
    }

    #[test]
    fn synced_data_survives_a_crash() -> io::Result<()> {
        for seed in 0..SEEDS {
            let mem = storage(seed)?;
            file(&mem, "/d/a.log", b"hello", b"")?;
            assert!(mem.crash(torn()).is_empty());
            assert_eq!(mem.read_all(p("/d/a.log"))?, b"hello");
            assert_eq!(mem.read_file(p("d/./x/../a.log")), Some(b"hello".to_vec()));
        }
        Ok(())
    }

    #[test]
    fn unsynced_appends_leave_a_prefix() -> io::Result<()> {
        let all = b"synced|appended, never synced";
        let mut lengths = BTreeSet::new();
        for seed in 0..SEEDS {
            let mem = storage(seed)?;
            file(&mem, "/d/a.log", &all[..7], &all[7..])?;
            mem.crash(CrashFaults::default());
            let after = mem.read_all(p("/d/a.log"))?;
            assert!(all.starts_with(&after) && after.len() >= 7, "{seed}: {after:?}");
            lengths.insert(after.len());
        }
        assert!(lengths.contains(&7) && lengths.contains(&all.len()) && lengths.len() > 10);
        Ok(())
    }

    #[test]
    fn torn_garbage_never_touches_synced_bytes() -> io::Result<()> {
        let mut torn_seen = false;
        for seed in 0..SEEDS {
            let mem = storage(seed)?;
            file(&mem, "/d/a.log", b"synced|", &[0xAA; 40])?;
            mem.crash(torn());
            let after = mem.read_all(p("/d/a.log"))?;
            assert!(after.starts_with(b"synced|") && after.len() <= 47);
            torn_seen |= after[7..].iter().any(|&b| b != 0xAA);
        }
        assert!(torn_seen);
        Ok(())
    }

    #[test]
    fn overwritten_files_are_old_or_new() -> io::Result<()> {
        let mut seen = BTreeSet::new();
        for seed in 0..SEEDS {
            let mem = storage(seed)?;
            let file = file(&mem, "/d/a", b"old content", b"")?;
            file.truncate(3)?;
            file.write_at(b"NEW", 0)?;
            mem.crash(torn());
            let after = mem.read_all(p("/d/a"))?;
            assert!(after == b"old content" || after == b"NEW", "{after:?}");
            seen.insert(after);
        }
        assert_eq!(seen.len(), 2);
        Ok(())
    }

    #[test]
    fn file_creation_is_durable_only_after_sync_dir() -> io::Result<()> {
        let (mut vanished, mut kept) = (false, false);
        for seed in 0..SEEDS {
            let mem = storage(seed)?;
            for name in ["/d/a", "/d/b"] {
                mem.open(p(name), OpenMode::Truncate)?.sync()?;
            }
            mem.crash(CrashFaults::default());
            let (a, b) = (mem.exists(p("/d/a")), mem.exists(p("/d/b")));
            assert!(a || !b, "the journal is applied in order");
            (vanished, kept) = (vanished || !a, kept || b);

            mem.open(p("/d/c"), OpenMode::Truncate)?;
            mem.sync_dir(p("/d"))?;
            mem.crash(CrashFaults::default());
            assert!(mem.exists(p("/d/c")));
        }
        assert!(vanished && kept);
        Ok(())
    }

    #[test]
    fn unsynced_directories_may_vanish_with_their_files() -> io::Result<()> {
        let mut vanished = false;
        for seed in 0..SEEDS {
            let mem = MemStorage::new(seed);
            mem.create_dir_all(p("/x/y"))?;
            mem.open(p("/x/y/f"), OpenMode::Truncate)?;
            mem.sync_dir(p("/x/y"))?;
            mem.crash(CrashFaults::default());
            vanished |= !mem.exists(p("/x"));
            assert_eq!(mem.exists(p("/x/y")), mem.exists(p("/x/y/f")));
        }
        assert!(vanished);
        Ok(())
    }

    #[test]
    fn rename_replaces_the_destination() -> io::Result<()> {
        let mem = storage(1)?;
        mem.write_atomic(p("/d/a"), b"a")?;
        mem.write_atomic(p("/d/b"), b"b")?;
        let old_b = mem.open(p("/d/b"), OpenMode::Existing)?;
        mem.rename(p("/d/a"), p("/d/b"))?;
        assert_eq!(mem.read_all(p("/d/b"))?, b"a");
        assert_eq!(mem.file_names(), [p("/d/b")]);
        let mut buf = [0; 1];
        old_b.read_exact_at(&mut buf, 0)?;
        assert_eq!(&buf, b"b", "an open handle keeps the replaced inode");
        mem.sync_dir(p("/d"))?;
        mem.crash(CrashFaults::default());
        assert_eq!(mem.list_dir(p("/d"))?, ["b"]);
        assert_eq!(mem.read_all(p("/d/b"))?, b"a");
        Ok(())
    }

    #[test]
    fn errors_are_those_of_the_os() -> io::Result<()> {
        let mem = storage(0)?;
        assert_eq!(kind(mem.open(p("/e/a"), OpenMode::CreateOrOpen)), Some(ErrorKind::NotFound));
        assert_eq!(kind(mem.open(p("/d/a"), OpenMode::Existing)), Some(ErrorKind::NotFound));
        assert_eq!(kind(mem.open(p("/d"), OpenMode::Truncate)), Some(ErrorKind::IsADirectory));
        mem.open(p("/d/f"), OpenMode::Truncate)?;
        assert_eq!(kind(mem.create_dir_all(p("/d/f"))), Some(ErrorKind::AlreadyExists));
        assert_eq!(kind(mem.open(p("/d/f/g"), OpenMode::Truncate)), Some(ErrorKind::NotADirectory));
        assert_eq!(kind(mem.remove_file(p("/d/g"))), Some(ErrorKind::NotFound));
        assert_eq!(kind(mem.remove_file(p("/d"))), Some(ErrorKind::IsADirectory));
        assert_eq!(kind(mem.remove_dir_all(p("/d/f"))), Some(ErrorKind::NotADirectory));
        assert_eq!(kind(mem.rename(p("/d/g"), p("/d/h"))), Some(ErrorKind::NotFound));
        assert_eq!(kind(mem.list_dir(p("/e"))), Some(ErrorKind::NotFound));
        mem.create_dir_all(p("/d/sub/deeper"))?;
        let mut names = mem.list_dir(p("/d"))?;
        names.sort();
        assert_eq!(names, ["f", "sub"]);
        mem.remove_dir_all(p("/d/sub"))?;
        mem.remove_file(p("/d/f"))?;
        assert!(mem.list_dir(p("/d"))?.is_empty() && mem.exists(p("/")));
        Ok(())
    }

    /// `write_atomic` interrupted at its file sync, at its directory sync, or
    /// not at all, then a crash: the old or the new content, never a mix.
    #[test]
    fn write_atomic_leaves_the_old_or_the_new_content() -> io::Result<()> {
        let mut seen = BTreeSet::new();
        for seed in 0..SEEDS {
            for syncs in [Some(0), Some(1), None] {
                let mem = storage(seed)?;
                mem.write_atomic(p("/d/meta"), b"old")?;
                mem.fail_syncs_after(syncs);
                let done = mem.write_atomic(p("/d/meta"), b"new content").is_ok();
                assert_eq!(done, syncs.is_none());
                mem.crash(torn());
                let after = mem.read_all(p("/d/meta"))?;
                assert!(after == b"old" || after == b"new content", "{seed}: {after:?}");
                assert!(!done || after == b"new content", "a completed write is durable");
                seen.insert(after);
            }
        }
        assert_eq!(seen.len(), 2);
        Ok(())
    }

    #[test]
    fn bit_flips_hit_only_synced_bytes_of_matching_files() -> io::Result<()> {
        let mut hit = BTreeSet::new();
        for seed in 0..SEEDS {
            let mem = storage(seed)?;
            file(&mem, "/d/a.log", &[0; 100], &[0; 50])?;
            file(&mem, "/d/a.index", &[0; 100], b"")?;
            file(&mem, "/d/b.log", b"", &[0; 100])?;
            let flips = mem.crash(CrashFaults { bit_flips: 3, ..CrashFaults::default() });
            assert_eq!(flips.len(), 3);
            assert!(flips.iter().all(|f| f.path == p("/d/a.log") && f.position < 100));
            hit.extend(flips.iter().map(|f| f.position));
            let log = mem.read_all(p("/d/a.log"))?;
            let flipped = |i: usize| flips.iter().any(|f| f.position == i as u64);
            assert!(log.iter().enumerate().all(|(i, &b)| b == 0 || flipped(i)));
            assert!(mem.read_all(p("/d/a.index"))?.iter().all(|&b| b == 0));
            assert!(mem.read_all(p("/d/b.log"))?.iter().all(|&b| b == 0));
        }
        assert!(hit.len() > 50, "flips are spread over the synced region");
        Ok(())
    }

    #[test]
    fn flip_bit_corrupts_on_purpose() -> io::Result<()> {
        let mem = storage(0)?;
        mem.write_atomic(p("/d/a"), &[0; 4])?;
        mem.flip_bit(p("/d/a"), 2, 7)?;
        assert_eq!(mem.read_file(p("/d/a")), Some(vec![0, 0, 0x80, 0]));
        mem.crash(CrashFaults::default());
        assert_eq!(mem.read_file(p("/d/a")), Some(vec![0, 0, 0x80, 0]));
        assert_eq!(kind(mem.flip_bit(p("/d/a"), 4, 0)), Some(ErrorKind::InvalidInput));
        assert_eq!(kind(mem.flip_bit(p("/d/b"), 0, 0)), Some(ErrorKind::NotFound));
        Ok(())
    }

    #[test]
    fn old_handles_are_stale_after_a_crash() -> io::Result<()> {
        let mem = storage(0)?;
        let old = file(&mem, "/d/a", b"abc", b"")?;
        mem.crash(CrashFaults::default());
        assert_eq!(kind(old.write_at(b"zzz", 0)), Some(ErrorKind::StaleNetworkFileHandle));
        assert!(old.len().is_err() && old.sync().is_err());
        assert_eq!(mem.read_all(p("/d/a"))?, b"abc");
        Ok(())
    }

    #[test]
    fn injected_sync_failures() -> io::Result<()> {
        let mem = storage(0)?;
        let file = mem.open(p("/d/a"), OpenMode::Truncate)?;
        mem.fail_syncs_after(Some(1));
        file.sync()?;
        assert!(file.sync().is_err() && mem.sync_dir(p("/d")).is_err());
        mem.fail_syncs_after(None);
        mem.sync_dir(p("/d"))?;
        Ok(())
    }

    #[test]
    fn crashes_are_reproducible() -> io::Result<()> {
        type Outcome = (Vec<Option<Vec<u8>>>, Vec<BitFlip>);
        let run = |seed| -> io::Result<Outcome> {
            let mem = storage(seed)?;
            for i in 0..5 {
                file(&mem, &format!("/d/{i}.log"), &[i; 64], &[i; 64])?;
            }
            let faults = CrashFaults { torn_garbage: true, bit_flips: 4, ..CrashFaults::default() };
            let flips = mem.crash(faults);
            Ok((mem.file_names().iter().map(|n| mem.read_file(n)).collect(), flips))
        };
        assert_eq!(run(7)?, run(7)?);
        assert_ne!(run(7)?, run(8)?);
        Ok(())
    }
}
