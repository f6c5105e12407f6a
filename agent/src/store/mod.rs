//! The content-addressed chunk store: files cut into content-defined chunks, each named by its
//! BLAKE3 hash and kept zstd-compressed, and manifests that list files → chunks with their
//! provenance. One store serves checkpoints, moves and (later) backups.
//!
//! Invariants: a chunk file's content always matches its name (written to a temp file, fsynced,
//! renamed; verified before it is accepted and again whenever it is read); a manifest becomes
//! visible only after every chunk it names is durably stored.
//!
//! ```text
//! <root>/chunks/<2 hex>/<64 hex>.zst   one chunk, zstd-compressed
//! <root>/manifests/<id>.json           committed manifests
//! ```
//!
//! A staged view ([`Store::staged`]) writes new chunks to a scratch directory (tmpfs) instead,
//! where thousands of files cost little while a container is frozen; it reads both places, and
//! [`Store::unstage`] moves the staged chunks into the store before their manifest commits.

mod chunker;
mod manifest;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub use chunker::{chunk_boundaries, AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};
pub use manifest::{ChunkRef, FileEntry, Manifest, Provenance, MANIFEST_VERSION};

/// A chunk's name: its BLAKE3 hash in lowercase hex.
pub type Hash = String;

/// Chunks hashed and compressed together before they are handed on.
const INGEST_WINDOW: usize = 16;

/// zstd level for chunks: the fastest level; page images still compress well, and chunks are
/// compressed while a moving container is frozen.
pub const ZSTD_LEVEL: i32 = 1;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("store: failed to {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A chunk's content does not match its name.
    #[error("store: chunk {hash} is corrupt ({reason})")]
    Corrupt { hash: Hash, reason: String },
    /// A chunk a manifest needs is not in the store.
    #[error("store: chunk {hash} is missing")]
    Missing { hash: Hash },
    /// A manifest is unreadable or invalid.
    #[error("store: invalid manifest {id}: {reason}")]
    BadManifest { id: String, reason: String },
}

type Result<T> = std::result::Result<T, StoreError>;

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Hash of `data` as hex.
pub fn hash(data: &[u8]) -> Hash {
    blake3::hash(data).to_hex().to_string()
}

/// Compresses a chunk for storage or the wire.
pub fn compress(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, ZSTD_LEVEL).expect("zstd compression of an in-memory buffer")
}

/// Decompresses a chunk and checks it against `expect` (its hash) and `size`.
pub fn verify(expect: &str, size: u64, compressed: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |reason: String| StoreError::Corrupt {
        hash: expect.to_string(),
        reason,
    };
    if size > MAX_CHUNK as u64 * 2 {
        return Err(corrupt(format!(
            "claimed size {size} is larger than any chunk"
        )));
    }
    let data = zstd::bulk::decompress(compressed, size as usize)
        .map_err(|e| corrupt(format!("does not decompress: {e}")))?;
    if data.len() as u64 != size {
        return Err(corrupt(format!("{} bytes, expected {size}", data.len())));
    }
    let got = hash(&data);
    if got != expect {
        return Err(corrupt(format!("content hashes to {got}")));
    }
    Ok(data)
}

/// A chunk store rooted at a directory (optionally staging new chunks elsewhere).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    stage: Option<PathBuf>,
}

impl Store {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        for d in ["chunks", "manifests", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io("create", &p))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
            stage: None,
        })
    }

    /// A view of this store that writes new chunks under `dir` instead (created on first
    /// write) and reads from both.
    pub fn staged(&self, dir: &Path) -> Store {
        Store {
            root: self.root.clone(),
            stage: Some(dir.to_path_buf()),
        }
    }

    /// Moves every staged chunk into the store and removes the staging directory. Returns how
    /// many chunks moved. A no-op for a view that does not stage.
    pub fn unstage(&self) -> Result<usize> {
        let Some(stage) = &self.stage else {
            return Ok(0);
        };
        let mut moved = 0;
        if let Ok(subs) = fs::read_dir(stage) {
            for sub in subs.flatten() {
                for e in fs::read_dir(sub.path())
                    .map_err(io("list", &sub.path()))?
                    .flatten()
                {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let Some(h) = name.strip_suffix(".zst").filter(|h| valid_hash(h)) else {
                        continue;
                    };
                    let dest = self.chunk_path(h);
                    if !dest.is_file() {
                        let data = fs::read(e.path()).map_err(io("read", &e.path()))?;
                        self.write_chunk(&dest, &data)?;
                        moved += 1;
                    }
                }
            }
        }
        self.drop_stage();
        Ok(moved)
    }

    /// Removes the staging directory and what it holds (an aborted transfer).
    pub fn drop_stage(&self) {
        if let Some(stage) = &self.stage {
            let _ = fs::remove_dir_all(stage);
        }
    }

    fn chunk_path(&self, hash: &str) -> PathBuf {
        let prefix = hash.get(..2).unwrap_or("xx");
        self.root
            .join("chunks")
            .join(prefix)
            .join(format!("{hash}.zst"))
    }

    fn staged_path(&self, hash: &str) -> Option<PathBuf> {
        let prefix = hash.get(..2).unwrap_or("xx");
        Some(
            self.stage
                .as_ref()?
                .join(prefix)
                .join(format!("{hash}.zst")),
        )
    }

    /// Where a new chunk goes: the stage, if this view has one.
    fn new_chunk_path(&self, hash: &str) -> PathBuf {
        self.staged_path(hash)
            .unwrap_or_else(|| self.chunk_path(hash))
    }

    /// Where chunk `hash` is: the store, else the stage.
    fn find(&self, hash: &str) -> PathBuf {
        let main = self.chunk_path(hash);
        match self.staged_path(hash) {
            Some(staged) if !main.is_file() => staged,
            _ => main,
        }
    }

    fn manifest_path(&self, id: &str) -> PathBuf {
        self.root.join("manifests").join(format!("{id}.json"))
    }

    /// Whether the store (or this view's stage) holds chunk `hash`.
    pub fn has(&self, hash: &str) -> bool {
        valid_hash(hash)
            && (self.chunk_path(hash).is_file()
                || self.staged_path(hash).is_some_and(|p| p.is_file()))
    }

    /// Stores a compressed chunk after verifying it against its hash and size. Idempotent.
    pub fn put_compressed(&self, hash: &str, size: u64, compressed: &[u8]) -> Result<()> {
        if valid_hash(hash) && !self.has(hash) {
            verify(hash, size, compressed)?;
        }
        self.put_verified(hash, compressed)
    }

    /// Stores a compressed chunk the caller has just verified (with [`verify`]). Idempotent.
    pub fn put_verified(&self, hash: &str, compressed: &[u8]) -> Result<()> {
        if !valid_hash(hash) {
            return Err(StoreError::Corrupt {
                hash: hash.chars().take(80).collect(),
                reason: "not a BLAKE3 hex hash".into(),
            });
        }
        if self.has(hash) {
            self.touch(hash);
            return Ok(());
        }
        self.write_chunk(&self.new_chunk_path(hash), compressed)
    }

    /// Stores raw data as a chunk; returns its reference and whether it was new.
    pub fn put(&self, data: &[u8]) -> Result<(ChunkRef, bool)> {
        let h = hash(data);
        let r = ChunkRef {
            hash: h.clone(),
            size: data.len() as u64,
        };
        if self.has(&h) {
            self.touch(&h);
            return Ok((r, false));
        }
        self.write_chunk(&self.new_chunk_path(&h), &compress(data))?;
        Ok((r, true))
    }

    /// Stores the chunks of `data` at `bounds`, hashing and compressing on every core.
    /// Returns them in order, each with whether it was new.
    fn put_all(&self, data: &[u8], bounds: &[(usize, usize)]) -> Result<Vec<(ChunkRef, bool)>> {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(bounds.len().max(1));
        if workers <= 1 {
            return bounds.iter().map(|&(s, e)| self.put(&data[s..e])).collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut results: Vec<Option<Result<(ChunkRef, bool)>>> =
            (0..bounds.len()).map(|_| None).collect();
        let slots = std::sync::Mutex::new(&mut results);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(s, e)) = bounds.get(i) else { break };
                    let r = self.put(&data[s..e]);
                    slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                });
            }
        });
        results
            .into_iter()
            .map(|r| r.expect("every chunk was processed"))
            .collect()
    }

    /// The compressed bytes of a chunk as stored, unverified (for sending: the receiver
    /// verifies).
    pub fn read_compressed_raw(&self, r: &ChunkRef) -> Result<Vec<u8>> {
        let path = self.find(&r.hash);
        fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::Missing {
                hash: r.hash.clone(),
            },
            _ => io("read", &path)(e),
        })
    }

    /// The compressed bytes of a chunk (verified).
    pub fn read_compressed(&self, r: &ChunkRef) -> Result<Vec<u8>> {
        let path = self.find(&r.hash);
        let mut buf = Vec::new();
        match File::open(&path) {
            Ok(mut f) => f.read_to_end(&mut buf).map_err(io("read", &path))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing {
                    hash: r.hash.clone(),
                })
            }
            Err(e) => return Err(io("open", &path)(e)),
        };
        verify(&r.hash, r.size, &buf)?;
        Ok(buf)
    }

    /// The contents of several chunks (verified), read in parallel, in order.
    fn read_many(&self, refs: &[ChunkRef]) -> Result<Vec<Vec<u8>>> {
        self.read_many_trusting(refs, &Default::default())
    }

    /// Like [`Store::read_many`], but chunks in `trusted` (verified moments ago) are only
    /// decompressed, not hashed again.
    fn read_many_trusting(
        &self,
        refs: &[ChunkRef],
        trusted: &std::collections::HashSet<String>,
    ) -> Result<Vec<Vec<u8>>> {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(refs.len().max(1));
        let per = refs.len().div_ceil(workers.max(1)).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = refs
                .chunks(per)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|r| {
                                if trusted.contains(&r.hash) {
                                    self.read_unverified(r)
                                } else {
                                    self.read(r)
                                }
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(refs.len());
            for h in handles {
                out.extend(h.join().expect("reader thread")?);
            }
            Ok(out)
        })
    }

    /// The content of a chunk (verified).
    pub fn read(&self, r: &ChunkRef) -> Result<Vec<u8>> {
        verify(&r.hash, r.size, &self.read_compressed_raw(r)?)
    }

    /// The content of a chunk, decompressed but not hashed (its size is still checked).
    pub fn read_unverified(&self, r: &ChunkRef) -> Result<Vec<u8>> {
        let data = zstd::bulk::decompress(&self.read_compressed_raw(r)?, r.size as usize).map_err(
            |e| StoreError::Corrupt {
                hash: r.hash.clone(),
                reason: format!("does not decompress: {e}"),
            },
        )?;
        if data.len() as u64 != r.size {
            return Err(StoreError::Corrupt {
                hash: r.hash.clone(),
                reason: format!("{} bytes, expected {}", data.len(), r.size),
            });
        }
        Ok(data)
    }

    /// Writes a chunk file: temp file, then rename, so a chunk file is never partial. It is not
    /// fsynced here: [`Store::commit`] syncs the whole filesystem once before a manifest that
    /// names it becomes visible (thousands of per-chunk fsyncs cost seconds).
    fn write_chunk(&self, path: &Path, data: &[u8]) -> Result<()> {
        let dir = path.parent().expect("chunk paths have a parent");
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        // Next to its final name (the stage may be another filesystem), hidden from readers.
        let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        fs::write(&tmp, data).map_err(io("write", &tmp))?;
        fs::rename(&tmp, path).map_err(io("rename into place", path))
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<()> {
        let dir = path.parent().expect("chunk paths have a parent");
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let tmp = self.root.join("tmp").join(format!(
            "{}.{}",
            uuid::Uuid::new_v4().simple(),
            std::process::id()
        ));
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(io("write", &tmp))?;
        fs::rename(&tmp, path).map_err(io("rename into place", path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", dir))
    }

    /// Cuts every regular file under `dir` into chunks and stores them. `on_chunk` sees each
    /// chunk (and whether it was new) as it is stored. Returns the file list, sorted by path.
    pub fn ingest_dir(
        &self,
        dir: &Path,
        mut on_chunk: impl FnMut(&ChunkRef, bool),
    ) -> Result<Vec<FileEntry>> {
        self.ingest_dir_placed(dir, |_, _, r, new| on_chunk(r, new))
    }

    /// Like [`Store::ingest_dir`], and `on_chunk` also sees where each chunk is: its file
    /// (relative to `dir`) and offset in it.
    pub fn ingest_dir_placed(
        &self,
        dir: &Path,
        mut on_chunk: impl FnMut(&str, u64, &ChunkRef, bool),
    ) -> Result<Vec<FileEntry>> {
        let mut files = Vec::new();
        for path in walk(dir)? {
            let rel = path
                .strip_prefix(dir)
                .expect("walk stays under dir")
                .to_string_lossy()
                .into_owned();
            let data = fs::read(&path).map_err(io("read", &path))?;
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &fs::metadata(&path)
                    .map_err(io("stat", &path))?
                    .permissions(),
            );
            // A window of chunks at a time, so `on_chunk` (e.g. a sender) can start on the first
            // chunks of a large file while the rest are still being hashed and compressed.
            let bounds = chunk_boundaries(&data);
            let mut chunks = Vec::with_capacity(bounds.len());
            for window in bounds.chunks(INGEST_WINDOW) {
                for ((start, _), (r, new)) in window.iter().zip(self.put_all(&data, window)?) {
                    on_chunk(&rel, *start as u64, &r, new);
                    chunks.push(r);
                }
            }
            files.push(FileEntry {
                path: rel,
                mode: mode & 0o7777,
                size: data.len() as u64,
                chunks,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Makes `m` visible, after checking that every chunk it names is stored.
    pub fn commit(&self, m: &Manifest) -> Result<()> {
        m.validate().map_err(|reason| StoreError::BadManifest {
            id: m.id.clone(),
            reason,
        })?;
        for r in m.chunks() {
            // In the store itself: staged chunks must be unstaged first.
            if !self.chunk_path(&r.hash).is_file() {
                return Err(StoreError::Missing {
                    hash: r.hash.clone(),
                });
            }
        }
        // Every chunk file durable before the manifest naming them is.
        let root = File::open(&self.root).map_err(io("open", &self.root))?;
        nix::unistd::syncfs(&root).map_err(|e| io("sync", &self.root)(e.into()))?;
        let data = serde_json::to_vec_pretty(m).expect("manifest serializes");
        self.write_atomic(&self.manifest_path(&m.id), &data)
    }

    /// A committed manifest.
    pub fn manifest(&self, id: &str) -> Result<Manifest> {
        let bad = |reason: String| StoreError::BadManifest {
            id: id.to_string(),
            reason,
        };
        if !valid_id(id) {
            return Err(bad("invalid id".into()));
        }
        let path = self.manifest_path(id);
        let text =
            fs::read(&path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        let m: Manifest = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        m.validate().map_err(bad)?;
        Ok(m)
    }

    /// Ids of committed manifests.
    pub fn manifest_ids(&self) -> Result<Vec<String>> {
        let dir = self.root.join("manifests");
        let mut ids: Vec<String> = fs::read_dir(&dir)
            .map_err(io("list", &dir))?
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Removes a manifest (its chunks stay until [`Store::gc`]).
    pub fn remove_manifest(&self, id: &str) -> Result<()> {
        let path = self.manifest_path(id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Marks a reused chunk as young, so [`Store::gc`] spares it while the manifest that reuses
    /// it is being assembled.
    fn touch(&self, hash: &str) {
        if let Ok(f) = File::options().append(true).open(self.chunk_path(hash)) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// Deletes one chunk (used to discard what an aborted move brought).
    pub fn remove_chunk(&self, hash: &str) {
        if valid_hash(hash) {
            let _ = fs::remove_file(self.chunk_path(hash));
        }
    }

    /// Writes the files of `m` under `dest`, verifying every chunk before it is written, except
    /// those in `trusted` (chunks the caller verified moments ago, which are only decompressed).
    pub fn materialize(
        &self,
        m: &Manifest,
        dest: &Path,
        trusted: &std::collections::HashSet<String>,
    ) -> Result<()> {
        fs::create_dir_all(dest).map_err(io("create", dest))?;
        for f in &m.files {
            let path = dest.join(&f.path);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(io("create", parent))?;
            }
            let mut out = File::create(&path).map_err(io("create", &path))?;
            // Decompress and verify a window of chunks on every core, then write them in order.
            for window in f.chunks.chunks(32) {
                for data in self.read_many_trusting(window, trusted)? {
                    out.write_all(&data).map_err(io("write", &path))?;
                }
            }
            out.sync_all().map_err(io("sync", &path))?;
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(f.mode))
                .map_err(io("chmod", &path))?;
        }
        Ok(())
    }

    /// Reads and verifies every chunk in `refs` (on every core); the first corrupt or missing
    /// one is the error.
    pub fn verify_chunks(&self, refs: &[ChunkRef]) -> Result<()> {
        for window in refs.chunks(64) {
            self.read_many(window)?;
        }
        Ok(())
    }

    /// The compressed size of a stored chunk (0 if it is not stored).
    pub fn stored_size(&self, hash: &str) -> u64 {
        fs::metadata(self.find(hash)).map(|m| m.len()).unwrap_or(0)
    }

    /// Deletes chunks no committed manifest references, except those in `keep` (chunks of a
    /// transfer whose manifest has not arrived yet). Chunks written after `since` are kept too,
    /// so a manifest being assembled concurrently loses nothing.
    pub fn gc(
        &self,
        since: std::time::SystemTime,
        keep: &std::collections::HashSet<String>,
    ) -> Result<(usize, u64)> {
        let mut live = keep.clone();
        for id in self.manifest_ids()? {
            for r in self.manifest(&id)?.chunks() {
                live.insert(r.hash.clone());
            }
        }
        let (mut removed, mut bytes) = (0, 0);
        let chunks = self.root.join("chunks");
        for sub in fs::read_dir(&chunks)
            .map_err(io("list", &chunks))?
            .flatten()
        {
            for e in fs::read_dir(sub.path())
                .map_err(io("list", &sub.path()))?
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                let h = name.trim_end_matches(".zst");
                let meta = e.metadata().map_err(io("stat", &e.path()))?;
                let young = meta.modified().map(|t| t >= since).unwrap_or(true);
                if !live.contains(h) && !young {
                    fs::remove_file(e.path()).map_err(io("remove", &e.path()))?;
                    removed += 1;
                    bytes += meta.len();
                }
            }
        }
        Ok((removed, bytes))
    }
}

fn valid_hash(h: &str) -> bool {
    h.len() == 64
        && h.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Manifest ids: like container ids.
pub fn valid_id(id: &str) -> bool {
    runtime::id::validate_id(id).is_ok() && id.len() <= 200
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io("list", &d))? {
            let e = e.map_err(io("list", &d))?;
            let t = e.file_type().map_err(io("stat", &e.path()))?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
