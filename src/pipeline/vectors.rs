//! Getting vectors for a batch: Memcached first, then one model call for all the misses.
//!
//! Identical texts in one batch are embedded once. The blocking parts (Memcached, the model) run
//! on tokio's blocking pool; writing misses back to Memcached is not waited for.

use std::collections::HashMap;
use std::sync::Arc;

use super::reconcile::Vector;
use crate::dedup::{EmbeddingCache, cache_key};
use crate::embed::{EmbedError, Embedder};
use crate::telemetry::{CACHE_HITS_TOTAL, CACHE_MISSES_TOTAL, EMBEDDINGS_COMPUTED_TOTAL};

#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("embedding failed: {0}")]
    Embed(#[from] EmbedError),
    #[error("the embedding worker stopped: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

/// The model plus its cache.
#[derive(Clone)]
pub struct Vectors {
    embedder: Arc<Embedder>,
    cache: Arc<EmbeddingCache>,
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
    pub fn new(embedder: Arc<Embedder>, cache: Arc<EmbeddingCache>) -> Self {
        Self { embedder, cache }
    }

    pub fn dimension(&self) -> usize {
        self.embedder.dimension()
    }

    /// Vectors for `needs`, from the cache or the model.
    pub async fn get(&self, needs: &[Need<'_>]) -> Result<Embedded, VectorError> {
        if needs.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = needs.iter().map(|n| cache_key(n.sku, n.text)).collect();
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

    /// Embed `texts` in one model call; when that call fails, embed one by one so a single bad
    /// text is isolated (and dead-lettered by the caller) instead of failing the batch.
    async fn embed_texts(
        &self,
        texts: Vec<String>,
    ) -> Result<Vec<Result<Vec<f32>, String>>, VectorError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let embedder = self.embedder.clone();
        let result = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            match embedder.embed(&refs) {
                Ok(vectors) => vectors.into_iter().map(Ok).collect(),
                Err(batch_error) => {
                    tracing::warn!(error = %batch_error, texts = refs.len(), "batch embedding failed; embedding one by one");
                    refs.iter()
                        .map(|t| {
                            embedder
                                .embed(&[t])
                                .map_err(|e| e.to_string())
                                .and_then(|mut v| v.pop().ok_or_else(|| "no vector returned".to_owned()))
                        })
                        .collect::<Vec<_>>()
                }
            }
        })
        .await?;
        let ok = result.iter().filter(|r| r.is_ok()).count();
        metrics::counter!(EMBEDDINGS_COMPUTED_TOTAL).increment(ok as u64);
        Ok(result)
    }
}
