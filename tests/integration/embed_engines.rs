//! The two transformer engines and the embedder's threads: the native encoder (the default)
//! and tract's graph both match sentence-transformers, agree with each other, and the
//! persistent worker threads serve blocking and async callers at once, in order, surviving
//! callers that give up.
//!
//! The parity bar is the one of `embed.rs`: cosine >= 0.99999, max |diff| <= 1e-4, per text.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use vecsync::embed::{EmbedOptions, Embedder, Engine};

const MIN_COSINE: f64 = 0.99999;
const MAX_ABS_DIFF: f64 = 1e-4;

fn model_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "the model is missing from {}: run scripts/fetch-model first (these tests never skip)",
        dir.display()
    );
    dir
}

/// (text, sentence-transformers' vector) of the golden fixture.
fn golden() -> &'static [(String, Vec<f32>)] {
    static GOLDEN: OnceLock<Vec<(String, Vec<f32>)>> = OnceLock::new();
    GOLDEN.get_or_init(|| {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/all-MiniLM-L6-v2.jsonl");
        std::fs::read_to_string(path)
            .expect("read the golden fixture")
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                let vector = v["vector"]
                    .as_array()
                    .expect("vector")
                    .iter()
                    .map(|x| x.as_f64().expect("float") as f32)
                    .collect();
                (v["text"].as_str().expect("text").to_owned(), vector)
            })
            .collect()
    })
}

fn native() -> &'static Arc<Embedder> {
    static NATIVE: OnceLock<Arc<Embedder>> = OnceLock::new();
    NATIVE.get_or_init(|| Arc::new(Embedder::load(&model_dir()).expect("load the native encoder")))
}

/// (cosine, max absolute difference), in f64.
fn compare(a: &[f32], b: &[f32]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .fold(0.0, f64::max);
    (dot / (norm(a) * norm(b)), diff)
}

fn assert_close(what: &str, texts: &[&str], got: &[Vec<f32>], want: &[&[f32]]) {
    assert_eq!(got.len(), want.len(), "{what}: one vector per text");
    let mut worst = (1.0f64, 0.0f64);
    for ((text, g), w) in texts.iter().zip(got).zip(want) {
        let (cos, diff) = compare(g, w);
        worst = (worst.0.min(cos), worst.1.max(diff));
        assert!(
            cos >= MIN_COSINE && diff <= MAX_ABS_DIFF,
            "{what}: {text:?}: cosine {cos:.8}, max diff {diff:.2e}"
        );
    }
    println!(
        "{what}: {} texts, worst cosine 1 - {:.3e}, worst max abs diff {:.3e}",
        got.len(),
        1.0 - worst.0,
        worst.1
    );
}

#[test]
fn embed_engines_native_is_the_default_and_matches_sentence_transformers() {
    assert_eq!(native().engine(), Engine::Native);
    let texts: Vec<&str> = golden().iter().map(|(t, _)| t.as_str()).collect();
    let want: Vec<&[f32]> = golden().iter().map(|(_, v)| v.as_slice()).collect();
    let got = native().embed(&texts).expect("embed");
    assert_close("native", &texts, &got, &want);
}

#[test]
fn embed_engines_graph_matches_sentence_transformers_and_the_native_encoder() {
    let graph = Embedder::load_engine(&model_dir(), EmbedOptions::default(), Engine::Graph)
        .expect("load the graph engine");
    assert_eq!(graph.engine(), Engine::Graph);
    let texts: Vec<&str> = golden().iter().map(|(t, _)| t.as_str()).collect();
    let want: Vec<&[f32]> = golden().iter().map(|(_, v)| v.as_slice()).collect();
    let got = graph.embed(&texts).expect("embed");
    assert_close("graph", &texts, &got, &want);
    let native = native().embed(&texts).expect("embed");
    let native: Vec<&[f32]> = native.iter().map(Vec::as_slice).collect();
    assert_close("graph against native", &texts, &got, &native);
}

#[test]
fn embed_engines_native_batch_limits_do_not_change_vectors() {
    // One text per batch on one thread, and everything in one huge packed batch: the same
    // vectors as the default batching, to float rounding.
    let texts: Vec<&str> = golden().iter().take(60).map(|(t, _)| t.as_str()).collect();
    let want = native().embed(&texts).expect("embed");
    let want: Vec<&[f32]> = want.iter().map(Vec::as_slice).collect();
    for options in [
        EmbedOptions {
            threads: 1,
            max_batch_texts: 1,
            ..EmbedOptions::default()
        },
        EmbedOptions {
            threads: 1,
            max_batch_texts: 4096,
            max_batch_tokens: 1 << 20,
        },
    ] {
        let e = Embedder::load_with(&model_dir(), options).expect("load");
        let got = e.embed(&texts).expect("embed");
        assert_close(&format!("{options:?}"), &texts, &got, &want);
    }
}

#[test]
fn embed_engines_async_and_blocking_callers_share_the_threads() {
    let embedder = native();
    let texts: Vec<String> = golden()
        .iter()
        .skip(19)
        .take(40)
        .map(|(t, _)| t.clone())
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want = embedder.embed(&refs).expect("embed");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    std::thread::scope(|s| {
        // Blocking callers on their own threads while async calls run on the runtime.
        let blocking: Vec<_> = (0..2)
            .map(|_| s.spawn(|| embedder.embed(&refs).expect("blocking embed")))
            .collect();
        let results = runtime.block_on(async {
            let calls: Vec<_> = (0..4)
                .map(|i| {
                    // Each call a different slice, so a mix-up between calls would show.
                    let part: Vec<String> = texts[i * 10..(i + 1) * 10].to_vec();
                    tokio::spawn(embedder.embed_owned(part))
                })
                .collect();
            let mut out = Vec::new();
            for c in calls {
                out.push(c.await.expect("task").expect("async embed"));
            }
            out
        });
        for (i, r) in results.iter().enumerate() {
            assert_eq!(
                r,
                &want[i * 10..(i + 1) * 10],
                "async call {i} got another call's vectors"
            );
        }
        for b in blocking {
            assert_eq!(b.join().expect("thread"), want);
        }
    });
}

#[test]
fn embed_engines_a_dropped_future_does_not_wedge_the_threads() {
    let embedder = Arc::new(
        Embedder::load_with(
            &model_dir(),
            EmbedOptions {
                threads: 1,
                max_batch_texts: 1,
                ..EmbedOptions::default()
            },
        )
        .expect("load"),
    );
    let texts: Vec<String> = golden().iter().map(|(t, _)| t.clone()).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // 200 batches of one text; give up on the call before it can be done.
        let abandoned = embedder.embed_owned(texts.clone());
        let timeout = tokio::time::timeout(std::time::Duration::from_millis(1), abandoned).await;
        assert!(timeout.is_err(), "200 texts on one thread in 1 ms");
        // The thread skips the rest of the abandoned call and answers the next one.
        let one = embedder
            .embed_owned(vec![texts[0].clone()])
            .await
            .expect("embed after a dropped call");
        let (cos, _) = compare(&one[0], &golden()[0].1);
        assert!(cos >= MIN_COSINE, "cosine {cos}");
    });
}
