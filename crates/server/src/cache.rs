//! The embedding cache: an LRU bounded by bytes, keyed by a 128-bit hash of backbone
//! fingerprint + the input (its kind and bytes), so a repeated input costs no backbone
//! pass.
use std::sync::{Arc, Mutex};

use lru::LruCache;
use polyhead_backbone::Input;
use sha2::{Digest, Sha256};

/// Cache key: the first 16 bytes of sha256(fingerprint, the input's kind tag, its
/// bytes); for a text, sha256(fingerprint, 0, text).
pub type CacheKey = [u8; 16];

/// Per-entry overhead counted on top of the vector (key, Arc, LRU links).
const ENTRY_OVERHEAD: usize = 64;

/// A thread-safe LRU of embeddings, bounded by total bytes.
#[derive(Debug)]
pub struct EmbeddingCache {
    inner: Mutex<Inner>,
    fingerprint: String,
    capacity: usize,
}

#[derive(Debug)]
struct Inner {
    lru: LruCache<CacheKey, Arc<[f32]>>,
    bytes: usize,
}

impl EmbeddingCache {
    /// A cache of at most `capacity` bytes for the backbone `fingerprint` (0 = off).
    pub fn new(fingerprint: &str, capacity: usize) -> EmbeddingCache {
        EmbeddingCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            fingerprint: fingerprint.to_owned(),
            capacity,
        }
    }

    /// The key of `input`'s frozen features.
    pub fn key(&self, input: &Input) -> CacheKey {
        self.key_for(None, input)
    }

    /// The key of `input`'s features under `branch` (an adapted task's branch id, see
    /// `InferencePath`), or its frozen features.
    pub fn key_for(&self, branch: Option<&str>, input: &Input) -> CacheKey {
        let (kind, bytes) = input.key_bytes();
        let mut h = Sha256::new();
        h.update(self.fingerprint.as_bytes());
        if let Some(id) = branch {
            // A separator no fingerprint holds, then the id's length: never equal
            // to a frozen key's input.
            h.update(b"\0branch\0");
            h.update((id.len() as u64).to_le_bytes());
            h.update(id.as_bytes());
        }
        h.update([kind]);
        h.update(bytes);
        let d = h.finalize();
        let mut k = [0u8; 16];
        k.copy_from_slice(&d[..16]);
        k
    }

    /// The cached embedding of `key`, refreshing its recency.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<[f32]>> {
        if self.capacity == 0 {
            return None;
        }
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lru
            .get(key)
            .cloned()
    }

    /// Stores an embedding, evicting least recently used entries over capacity.
    pub fn put(&self, key: CacheKey, value: Arc<[f32]>) {
        let size = value.len() * 4 + ENTRY_OVERHEAD;
        if size > self.capacity {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = inner.lru.put(key, value) {
            inner.bytes -= old.len() * 4 + ENTRY_OVERHEAD;
        }
        inner.bytes += size;
        while inner.bytes > self.capacity {
            match inner.lru.pop_lru() {
                Some((_, v)) => inner.bytes -= v.len() * 4 + ENTRY_OVERHEAD,
                None => break,
            }
        }
    }

    /// Bytes in use.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: usize, x: f32) -> Arc<[f32]> {
        vec![x; n].into()
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let entry = 4 * 4 + ENTRY_OVERHEAD;
        let c = EmbeddingCache::new("fp", entry * 2);
        let (a, b, d) = (
            c.key(&Input::from("a")),
            c.key(&Input::from("b")),
            c.key(&Input::from("d")),
        );
        c.put(a, v(4, 1.0));
        c.put(b, v(4, 2.0));
        assert!(c.get(&a).is_some()); // a is now most recent
        c.put(d, v(4, 3.0));
        assert!(c.get(&b).is_none(), "b was least recently used");
        assert_eq!(c.get(&a).unwrap()[0], 1.0);
        assert_eq!(c.bytes(), entry * 2);
    }

    #[test]
    fn key_depends_on_fingerprint_and_text() {
        let c1 = EmbeddingCache::new("fp1", 1 << 20);
        let c2 = EmbeddingCache::new("fp2", 1 << 20);
        assert_ne!(c1.key(&Input::from("x")), c2.key(&Input::from("x")));
        assert_ne!(c1.key(&Input::from("x")), c1.key(&Input::from("y")));
        assert_eq!(c1.key(&Input::from("x")), c1.key(&Input::from("x")));
    }

    #[test]
    fn zero_capacity_disables() {
        let c = EmbeddingCache::new("fp", 0);
        c.put(c.key(&Input::from("a")), v(4, 1.0));
        assert!(c.get(&c.key(&Input::from("a"))).is_none());
    }
}
