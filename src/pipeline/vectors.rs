//! Getting vectors for a batch: Memcached first, then one embedder call for all the misses.
//!
//! Identical texts in one batch are embedded once. The blocking parts (Memcached, the local
//! model) run on tokio's blocking pool; writing misses back to Memcached is not waited for. The
//! cache key names the embedding fingerprint, so vectors of another model or template are never
//! taken from the cache.

use std::collections::HashMap;
use std::sync::Arc;

use super::reconcile::Vector;
use crate::dedup::{EmbeddingCache, cache_key};
use crate::embed::{EmbedCallError, TextEmbedder};
use crate::telemetry::{CACHE_HITS_TOTAL, CACHE_MISSES_TOTAL, EMBEDDINGS_COMPUTED_TOTAL};

#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error(transparent)]
    Embed(#[from] EmbedCallError),
    #[error("the embedding worker stopped: {0}")]
    Worker(tokio::task::JoinError),
}

impl From<tokio::task::JoinError> for VectorError {
    fn from(e: tokio::task::JoinError) -> Self {
        VectorError::Worker(e)
    }
}

impl VectorError {
    /// Whether to hold the position and try again (the remote embedder is down or busy).
    pub fn is_transient(&self) -> bool {
        matches!(self, VectorError::Embed(e) if e.is_transient())
    }

    /// The embedder's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            VectorError::Embed(e) => e.retry_after(),
            VectorError::Worker(_) => None,
        }
    }
}

/// The embedder plus its cache.
#[derive(Clone)]
pub struct Vectors {
    embedder: TextEmbedder,
    cache: Arc<EmbeddingCache>,
    /// The short embedding fingerprint, part of every cache key.
    fingerprint: String,
}

/// One text a product needs a vector for.
#[derive(Debug, Clone)]
pub struct Need<'a> {
    pub sku: &'a str,
    pub text: &'a str,
}

/// The outcome per need, in order: a vector, or why this text could not be embedded.
pub type Embedded = Vec<Result<Vector, String>>;

impl Vectors {
    pub fn new(embedder: TextEmbedder, cache: Arc<EmbeddingCache>, fingerprint: &str) -> Self {
        Self {
            embedder,
            cache,
            fingerprint: fingerprint.to_owned(),
        }
    }

    pub fn dimension(&self) -> usize {
        self.embedder.dimension()
    }

    /// Vectors for `needs`, from the cache or the model.
    pub async fn get(&self, needs: &[Need<'_>]) -> Result<Embedded, VectorError> {
        if needs.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = needs
            .iter()
            .map(|n| cache_key(&self.fingerprint, n.sku, n.text))
            .collect();
        let dim = self.dimension();

        let hits = if self.cache.is_enabled() {
            let cache = self.cache.clone();
            let lookup = keys.clone();
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = lookup.iter().map(String::as_str).collect();
                cache.get_many(&refs, dim)
            })
            .await?
        } else {
            HashMap::new()
        };

        // Unique texts among the misses, embedded once each.
        let mut unique: Vec<String> = Vec::new();
        let mut slot_of_text: HashMap<&str, usize> = HashMap::new();
        let mut miss_slots: Vec<Option<usize>> = Vec::with_capacity(needs.len());
        for (need, key) in needs.iter().zip(&keys) {
            if hits.contains_key(key) {
                miss_slots.push(None);
                continue;
            }
            let slot = *slot_of_text.entry(need.text).or_insert_with(|| {
                unique.push(need.text.to_owned());
                unique.len() - 1
            });
            miss_slots.push(Some(slot));
        }
        let hit_count = needs.len() - miss_slots.iter().filter(|s| s.is_some()).count();
        if self.cache.is_enabled() {
            metrics::counter!(CACHE_HITS_TOTAL).increment(hit_count as u64);
            metrics::counter!(CACHE_MISSES_TOTAL).increment((needs.len() - hit_count) as u64);
        }

        let computed = self.embed_texts(unique).await?;
        let mut out: Embedded = Vec::with_capacity(needs.len());
        let mut to_cache: Vec<(String, Vec<f32>)> = Vec::new();
        for (key, slot) in keys.into_iter().zip(miss_slots) {
            match slot {
                None => out.push(
                    hits.get(&key)
                        .map(|v| Vector::from(v.as_slice()))
                        .ok_or_else(|| "cache hit vanished".to_owned()),
                ),
                Some(i) => {
                    let v = computed
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| Err("no vector returned".into()));
                    if let Ok(vector) = &v {
                        to_cache.push((key, vector.clone()));
                    }
                    out.push(v.map(Vector::from));
                }
            }
        }
        if self.cache.is_enabled() && !to_cache.is_empty() {
            let cache = self.cache.clone();
            // Fire and forget: a slow Memcached must not hold up the write to Weaviate.
            tokio::task::spawn_blocking(move || {
                let refs: Vec<(&str, &[f32])> = to_cache
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_slice()))
                    .collect();
                cache.set_many(&refs);
            });
        }
        Ok(out)
    }

    /// Embed `texts` in one embedder call; a text that cannot be embedded gets its reason (the
    /// caller dead-letters it), the others their vectors.
    async fn embed_texts(
        &self,
        texts: Vec<String>,
    ) -> Result<Vec<Result<Vec<f32>, String>>, VectorError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let result = self.embedder.embed_each(texts).await?;
        let ok = result.iter().filter(|r| r.is_ok()).count();
        metrics::counter!(EMBEDDINGS_COMPUTED_TOTAL).increment(ok as u64);
        Ok(result)
    }
}
