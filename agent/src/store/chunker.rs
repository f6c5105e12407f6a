//! Content-defined chunking (FastCDC): boundaries depend on content, so an insertion or a change
//! in one place of a file leaves the other chunks (and their hashes) as they were.

/// Smallest chunk.
pub const MIN_CHUNK: u32 = 64 * 1024;
/// Typical chunk.
pub const AVG_CHUNK: u32 = 256 * 1024;
/// Largest chunk.
pub const MAX_CHUNK: u32 = 1024 * 1024;

/// `(start, end)` byte ranges covering `data`; an empty file has none.
pub fn chunk_boundaries(data: &[u8]) -> Vec<(usize, usize)> {
    if data.is_empty() {
        return Vec::new();
    }
    fastcdc::v2020::FastCDC::new(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
        .map(|c| (c.offset, c.offset + c.length))
        .collect()
}
