//! The Memcached embedding cache that deduplicates update bursts, as the seed designed it.
//!
//! Key `embedding:{sku}:{sha256 hex of the description}`, value the vector as a JSON array of
//! floats (the seed's format, so a Python consumer and vecsync can share one cache during a
//! migration), TTL `--cache-ttl-secs`. A hit skips the model.
//!
//! # Error handling
//! The cache is an optimisation, never a dependency: every Memcached failure is logged, counted
//! (`vecsync_embedding_cache_errors_total`) and answered as a miss, and the cache then stays off
//! for a cool-down before it reconnects. Calls are short (sub-second socket timeouts) and
//! blocking, so the pipeline runs them on tokio's blocking pool, never on the async threads.
//!
//! vecsync speaks memcached's ASCII protocol itself (`dedup/client.rs`; the binary protocol is
//! deprecated): a batch's lookups are one round trip, and so are its stores.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Memcached keys must be at most 250 bytes with no whitespace or control characters.
const MAX_KEY_LEN: usize = 250;

/// How the cache reaches Memcached.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// `host:port`; `None` disables the cache.
    pub server: Option<String>,
    /// How long an entry lives (the seed used 2 seconds).
    pub ttl: Duration,
    /// Connect, read and write timeout of one call.
    pub timeout: Duration,
    /// How long the cache stays off after a failure before it reconnects.
    pub retry_after: Duration,
}

impl CacheConfig {
    /// A configuration with the seed's TTL and short timeouts.
    pub fn new(server: Option<String>) -> Self {
        Self {
            server,
            ttl: Duration::from_secs(2),
            timeout: Duration::from_millis(250),
            retry_after: Duration::from_secs(5),
        }
    }
}

mod client;

use client::{Client, ClientError};

/// Why a cache call failed (only ever logged and counted).
#[derive(Debug, thiserror::Error)]
#[error("memcached at {server}: {source}")]
struct CacheError {
    server: String,
    source: ClientError,
}

enum State {
    Disabled,
    Idle,
    Connected(Client),
    Down { until: Instant },
}

/// A Memcached-backed cache of embeddings; cheap to share behind an `Arc`.
pub struct EmbeddingCache {
    config: CacheConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for EmbeddingCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingCache")
            .field("server", &self.config.server)
            .field("ttl", &self.config.ttl)
            .finish()
    }
}

/// The seed's cache key for a product's description.
///
/// SKUs that would make an invalid Memcached key (whitespace, control characters, too long) are
/// replaced by their own sha256, so such products are still cached instead of failing.
pub fn cache_key(sku: &str, description: &str) -> String {
    let text_hash = hex(&Sha256::digest(description.as_bytes()));
    let key = format!("embedding:{sku}:{text_hash}");
    let valid =
        key.len() <= MAX_KEY_LEN && !key.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        key
    } else {
        format!(
            "embedding:sha256-{}:{text_hash}",
            hex(&Sha256::digest(sku.as_bytes()))
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl EmbeddingCache {
    /// A cache for `config`; it connects on first use, so a Memcached that is down at start-up
    /// does not delay vecsync.
    pub fn new(config: CacheConfig) -> Self {
        let state = if config.server.is_some() {
            State::Idle
        } else {
            State::Disabled
        };
        Self {
            config,
            state: Mutex::new(state),
        }
    }

    /// Whether a server is configured at all.
    pub fn is_enabled(&self) -> bool {
        self.config.server.is_some()
    }

    /// Look up many keys at once (one round trip); returns the vectors found with exactly
    /// `dimension` floats. Blocking. Failures count as misses.
    pub fn get_many(&self, keys: &[&str], dimension: usize) -> HashMap<String, Vec<f32>> {
        if keys.is_empty() {
            return HashMap::new();
        }
        self.with_client(|c| c.get_many(keys))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| {
                let vector = serde_json::from_slice::<Vec<f32>>(&v).ok()?;
                (vector.len() == dimension).then_some((k, vector))
            })
            .collect()
    }

    /// Store vectors under their keys with the configured TTL (one round trip). Blocking;
    /// failures are counted and otherwise ignored.
    pub fn set_many(&self, entries: &[(&str, &[f32])]) {
        if entries.is_empty() {
            return;
        }
        let ttl = u32::try_from(self.config.ttl.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        // NaN cannot be written as JSON; such a vector is not cached.
        let values: Vec<(&str, Vec<u8>)> = entries
            .iter()
            .filter_map(|(k, v)| serde_json::to_vec(v).ok().map(|bytes| (*k, bytes)))
            .collect();
        let refs: Vec<(&str, &[u8])> = values.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        if let Some(refused) = self.with_client(|c| c.set_many(&refs, ttl))
            && refused > 0
        {
            tracing::debug!(refused, "memcached did not store some embeddings");
        }
    }

    /// Run `call` on the connection, connecting when idle or when the cool-down is over. Any
    /// failure drops the connection and pauses the cache.
    fn with_client<T>(
        &self,
        call: impl FnOnce(&mut Client) -> Result<T, ClientError>,
    ) -> Option<T> {
        let server = self.config.server.as_deref()?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &*state {
            State::Disabled => return None,
            State::Down { until } if Instant::now() < *until => return None,
            State::Connected(_) => {}
            State::Down { .. } | State::Idle => {
                let was_down = matches!(*state, State::Down { .. });
                match Client::connect(server, self.config.timeout).and_then(|mut c| {
                    // Prove the server answers before trusting it.
                    c.version().map(|_| c)
                }) {
                    Ok(c) => {
                        if was_down {
                            tracing::info!(server, "memcached is back; embedding cache on again");
                        }
                        *state = State::Connected(c);
                    }
                    Err(source) => {
                        self.go_down(
                            &mut state,
                            &CacheError {
                                server: server.to_owned(),
                                source,
                            },
                        );
                        return None;
                    }
                }
            }
        }
        let State::Connected(client) = &mut *state else {
            return None;
        };
        match call(client) {
            Ok(v) => Some(v),
            Err(source) => {
                self.go_down(
                    &mut state,
                    &CacheError {
                        server: server.to_owned(),
                        source,
                    },
                );
                None
            }
        }
    }

    fn go_down(&self, state: &mut State, error: &CacheError) {
        metrics::counter!(crate::telemetry::CACHE_ERRORS_TOTAL).increment(1);
        let was_up = !matches!(*state, State::Down { .. });
        *state = State::Down {
            until: Instant::now() + self.config.retry_after,
        };
        if was_up {
            tracing::warn!(
                %error,
                retry_after_secs = self.config.retry_after.as_secs_f64(),
                "embedding cache unavailable; embedding without it until memcached answers again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_the_seeds_format() {
        // sha256("hello") is a well-known value.
        assert_eq!(
            cache_key("TS-001", "hello"),
            "embedding:TS-001:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn invalid_memcached_keys_are_hashed() {
        for sku in ["has space", "tab\there", &"x".repeat(200)] {
            let key = cache_key(sku, "d");
            assert!(key.len() <= MAX_KEY_LEN, "{key}");
            assert!(
                !key.chars().any(|c| c.is_whitespace() || c.is_control()),
                "{key}"
            );
            assert!(key.starts_with("embedding:sha256-"), "{key}");
            // Still specific to the product and to the text.
            assert_ne!(key, cache_key("other", "d"));
            assert_ne!(key, cache_key(sku, "e"));
        }
    }

    #[test]
    fn disabled_cache_misses_without_errors() {
        let cache = EmbeddingCache::new(CacheConfig::new(None));
        assert!(!cache.is_enabled());
        assert!(cache.get_many(&["k"], 3).is_empty());
        cache.set_many(&[("k", &[1.0, 2.0, 3.0])]);
    }
}
