//! The Memcached embedding cache against a real memcached: hits, TTL expiry, and riding out an
//! outage without ever failing the caller.

use std::time::Duration;

use vecsync::dedup::{CacheConfig, EmbeddingCache, cache_key};

use crate::harness::memcached::Memcached;
use crate::harness::{DEFAULT_DEADLINE, wait_until};

fn config(addr: String) -> CacheConfig {
    CacheConfig {
        retry_after: Duration::from_millis(200),
        ..CacheConfig::new(Some(addr))
    }
}

#[test]
fn stores_and_finds_vectors_by_sku_and_text() {
    let server = Memcached::start();
    let cache = EmbeddingCache::new(config(server.addr()));
    let k1 = cache_key("TS-001", "A classic crew-neck t-shirt");
    let k2 = cache_key("TS-001", "A different text");
    let v1 = [0.25f32, -0.5, 1.0];
    cache.set_many(&[(&k1, &v1)]);

    let found = cache.get_many(&[&k1, &k2], 3);
    assert_eq!(found.len(), 1, "only the stored text hits");
    assert_eq!(found.get(&k1).map(Vec::as_slice), Some(&v1[..]));
    // A vector of another dimension (another model) is a miss, not a wrong answer.
    assert!(cache.get_many(&[&k1], 384).is_empty());
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let server = Memcached::start();
    let cache = std::sync::Arc::new(EmbeddingCache::new(CacheConfig {
        ttl: Duration::from_secs(1),
        ..config(server.addr())
    }));
    let key = cache_key("JN-001", "Slim fit jeans");
    cache.set_many(&[(&key, &[1.0, 2.0])]);
    assert_eq!(cache.get_many(&[&key], 2).len(), 1);
    wait_until("the entry to expire", DEFAULT_DEADLINE, || {
        let cache = cache.clone();
        let key = key.clone();
        async move { cache.get_many(&[&key], 2).is_empty().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn an_outage_is_a_miss_and_the_cache_comes_back() {
    let mut server = Memcached::start();
    let cache = std::sync::Arc::new(EmbeddingCache::new(config(server.addr())));
    let key = cache_key("SKU-1", "text");
    cache.set_many(&[(&key, &[1.0])]);
    assert_eq!(cache.get_many(&[&key], 1).len(), 1);

    server.stop();
    // Calls neither fail nor hang: they miss.
    let started = std::time::Instant::now();
    assert!(cache.get_many(&[&key], 1).is_empty());
    cache.set_many(&[(&key, &[1.0])]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cache calls blocked for {:?}",
        started.elapsed()
    );

    server.restart();
    wait_until(
        "the cache to reconnect and store again",
        DEFAULT_DEADLINE,
        || {
            let cache = cache.clone();
            let key = key.clone();
            async move {
                cache.set_many(&[(&key, &[2.0])]);
                (cache.get_many(&[&key], 1).get(&key) == Some(&vec![2.0])).then_some(())
            }
        },
    )
    .await;
}

#[test]
fn a_batch_of_hundreds_is_stored_and_found_in_one_call_each() {
    let server = Memcached::start();
    let cache = EmbeddingCache::new(config(server.addr()));
    let keys: Vec<String> = (0..300)
        .map(|i| cache_key(&format!("SKU-{i}"), "text"))
        .collect();
    let vectors: Vec<Vec<f32>> = (0..300)
        .map(|i| (0..384).map(|j| (i * 384 + j) as f32 * 1e-4).collect())
        .collect();
    let entries: Vec<(&str, &[f32])> = keys
        .iter()
        .zip(&vectors)
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    cache.set_many(&entries);
    let mut asked: Vec<&str> = keys.iter().map(String::as_str).collect();
    let absent = cache_key("NOT-STORED", "text");
    asked.push(&absent);
    let found = cache.get_many(&asked, 384);
    assert_eq!(
        found.len(),
        300,
        "every stored vector, and not the absent one"
    );
    for (k, v) in keys.iter().zip(&vectors) {
        assert_eq!(found.get(k), Some(v), "{k}");
    }
}
