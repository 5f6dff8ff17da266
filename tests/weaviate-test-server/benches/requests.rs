//! The test server's own cost for the two requests vecsync's benchmarks send thousands of times:
//! `POST /v1/batch/objects` with 256 objects of 384-float vectors, and the GraphQL fetch of 256
//! objects by id (`where id ContainsAny`) with their vectors. Each request runs through the whole
//! pipeline (spec check of the request, handler, spec check of the response, serialisation)
//! in-process, on one thread, so the time per request is the server's CPU time.
//!
//! `cargo bench -p weaviate-test-server` (release build). `BENCH_ITERATIONS` (default 50) sets the
//! repetitions, `BENCH_ONLY=batch|fetch` runs one of the two. For a figure independent of machine
//! load, count instructions: `BENCH_ONLY=batch BENCH_ITERATIONS=10 valgrind --tool=callgrind
//! --toggle-collect='*handle_in_process*' target/release/deps/requests-*` and divide the total by
//! 11 (the iterations and the warm-up request).

use std::time::{Duration, Instant};

use serde_json::json;
use weaviate_test_server::TestServer;

const OBJECTS: usize = 256;
const DIMENSIONS: usize = 384;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let server = TestServer::start().await.expect("start");
    let class = json!({"class": "Product", "vectorizer": "none", "properties": [
        {"name": "sku", "dataType": ["text"]}, {"name": "name", "dataType": ["text"]},
        {"name": "description", "dataType": ["text"]}, {"name": "price", "dataType": ["number"]}]});
    let (status, _) = server
        .handle_in_process("POST", "/v1/schema", class.to_string().into_bytes())
        .await;
    assert_eq!(status, 200);

    // A fixed pseudo-random sequence: the same request bytes on every run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let ids: Vec<String> = (0..OBJECTS)
        .map(|i| {
            uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_DNS,
                format!("ProductSKU-{i}").as_bytes(),
            )
            .to_string()
        })
        .collect();
    // Vectors written as vecsync's serde_json writes an f32 (shortest round-trip digits).
    let objects: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let vector: Vec<String> = (0..DIMENSIONS)
                .map(|_| (next() as f32 * 0.1).to_string())
                .collect();
            let properties = json!({
                "sku": format!("SKU-{i}"), "name": format!("Product number {i}"),
                "description": "A plain cotton shirt for everyday wear, in several colours and sizes.",
                "price": 10.0 + i as f64 / 4.0});
            format!(
                "{{\"class\":\"Product\",\"id\":\"{id}\",\"vector\":[{}],\"properties\":{properties}}}",
                vector.join(",")
            )
        })
        .collect();
    let batch = format!("{{\"objects\":[{}]}}", objects.join(",")).into_bytes();
    let id_list: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    let query = format!(
        "{{ Get {{ Product(where: {{path: [\"id\"], operator: ContainsAny, valueText: [{}]}}, limit: {OBJECTS}) \
         {{ sku name description price _additional {{ id vector }} }} }} }}",
        id_list.join(", ")
    );
    let fetch = json!({ "query": query }).to_string().into_bytes();

    let measure = |name: &'static str, method: &'static str, path: &'static str, body: Vec<u8>| {
        let server = &server;
        async move {
            let (status, answer) = server.handle_in_process(method, path, body.clone()).await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
            let mut times = Vec::with_capacity(iterations);
            for _ in 0..iterations {
                let started = Instant::now();
                let (status, answer) = server.handle_in_process(method, path, body.clone()).await;
                times.push(started.elapsed());
                assert_eq!(status, 200);
                std::hint::black_box(answer);
            }
            times.sort();
            let mean = times.iter().sum::<Duration>() / iterations as u32;
            println!(
                "{name}: request {} KiB, answer {} KiB, {iterations} runs: median {:.2} ms, mean {:.2} ms, min {:.2} ms",
                body.len() / 1024,
                answer.len() / 1024,
                ms(times[iterations / 2]),
                ms(mean),
                ms(times[0]),
            );
        }
    };
    // The batch runs first either way: the fetch needs the objects.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only == "fetch" {
        let (status, _) = server
            .handle_in_process("POST", "/v1/batch/objects", batch.clone())
            .await;
        assert_eq!(status, 200);
    } else {
        measure(
            "POST /v1/batch/objects (256 x 384)",
            "POST",
            "/v1/batch/objects",
            batch.clone(),
        )
        .await;
    }
    if only != "batch" {
        measure(
            "GraphQL fetch of 256 ids with vectors",
            "POST",
            "/v1/graphql",
            fetch,
        )
        .await;
    }
    assert!(
        server.spec_violations().is_empty(),
        "{:?}",
        server.spec_violations()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
