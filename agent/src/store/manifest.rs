//! Manifests: which files, made of which chunks, and where they came from.

use serde::{Deserialize, Serialize};

/// Version of the manifest format.
pub const MANIFEST_VERSION: u32 = 1;

/// A chunk as a manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    /// BLAKE3 of the uncompressed content, hex.
    pub hash: String,
    /// Uncompressed size.
    pub size: u64,
}

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the manifest's root.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Size in bytes (the sum of its chunks).
    pub size: u64,
    /// Its chunks, in order.
    pub chunks: Vec<ChunkRef>,
}

/// Where and how a checkpoint was made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Node that made it.
    pub source_node: String,
    /// CRIU version there.
    pub criu_version: String,
    /// Kernel release there.
    pub kernel: String,
    /// CPU model there.
    pub cpu_model: String,
    /// BLAKE3 of the container's spec.
    pub spec_hash: String,
    /// When, Unix seconds.
    pub created_unix: i64,
}

/// A set of files stored as chunks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Id (unique in the store).
    pub id: String,
    /// `checkpoint` or `layer`.
    pub kind: String,
    /// The container it belongs to (empty for layers).
    pub container_id: String,
    /// Files, sorted by path.
    pub files: Vec<FileEntry>,
    /// Provenance.
    pub provenance: Provenance,
}

impl Manifest {
    /// Every chunk reference, in file order.
    pub fn chunks(&self) -> impl Iterator<Item = &ChunkRef> {
        self.files.iter().flat_map(|f| f.chunks.iter())
    }

    /// Total uncompressed bytes.
    pub fn logical_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Structural checks: version, id, safe relative paths, sizes that add up.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != MANIFEST_VERSION {
            return Err(format!(
                "version {} is not the supported {MANIFEST_VERSION}",
                self.version
            ));
        }
        if !super::valid_id(&self.id) {
            return Err(format!("invalid id {:?}", self.id));
        }
        for f in &self.files {
            let p = std::path::Path::new(&f.path);
            if f.path.is_empty()
                || p.is_absolute()
                || p.components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(format!(
                    "file path {:?} is not a plain relative path",
                    f.path
                ));
            }
            let sum: u64 = f.chunks.iter().map(|c| c.size).sum();
            if sum != f.size {
                return Err(format!(
                    "file {} is {} bytes but its chunks add up to {sum}",
                    f.path, f.size
                ));
            }
        }
        Ok(())
    }
}
