//! `vecsync search`: vector and hybrid (BM25 + vector) queries with `--where` filters, against
//! products the pipeline indexed (real MariaDB, the real model, the Weaviate test server).

use serde_json::Value;
use vecsync::search::{SearchRequest, parse_where, search};

use crate::harness::stack::{Stack, model_dir};

const PRODUCTS: &str = "INSERT INTO catalog.products (sku, name, description, price) VALUES
 ('SH-1', 'Trail running shoe', 'Lightweight shoe for mountain trails', 89.00),
 ('JK-1', 'Rain jacket', 'Waterproof jacket for hiking in the rain', 45.00),
 ('SO-1', 'Running socks', 'Breathable socks for long runs', 9.50),
 ('CF-1', 'Espresso machine', 'Makes strong coffee at home', 199.00)";

async fn indexed() -> Stack {
    let stack = Stack::start().await;
    stack.db.exec(PRODUCTS).await;
    let running = stack.run_in_process(&[]);
    stack.wait_in_sync().await;
    running.stop().await;
    stack
}

fn request(stack: &Stack, query: &str) -> SearchRequest {
    let embedder = vecsync::embed::EmbedderConfig {
        source: vecsync::embed::EmbedderSource::Local(model_dir()),
        ..Default::default()
    };
    SearchRequest {
        query: query.into(),
        limit: 3,
        embedder,
        weaviate_url: stack.weaviate.url(),
        weaviate_api_key: None,
        class: "Product".into(),
        hybrid: false,
        alpha: None,
        filters: Vec::new(),
    }
}

fn skus(hits: &[vecsync::sink::SearchHit]) -> Vec<&str> {
    hits.iter().map(|h| h.product.sku.as_str()).collect()
}

fn price(hit: &vecsync::sink::SearchHit) -> f64 {
    hit.product
        .price
        .as_ref()
        .and_then(serde_json::Number::as_f64)
        .expect("a price")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_and_filtered_searches_find_what_a_shopper_means() {
    let stack = indexed().await;

    // Vector search: nearest first, with distances.
    let hits = search(&request(&stack, "running shoes"))
        .await
        .expect("search");
    assert_eq!(hits[0].product.sku, "SH-1", "{:?}", skus(&hits));
    assert!(
        hits.iter()
            .all(|h| h.distance.is_some() && h.score.is_none())
    );

    // Hybrid: keywords and the vector agree on the shoe; scores best first.
    for alpha in [None, Some(0.0), Some(0.5), Some(1.0)] {
        let mut r = request(&stack, "running shoes");
        r.hybrid = true;
        r.alpha = alpha;
        let hits = search(&r).await.expect("hybrid search");
        assert_eq!(
            hits[0].product.sku,
            "SH-1",
            "alpha {alpha:?}: {:?}",
            skus(&hits)
        );
        let scores: Vec<f32> = hits.iter().map(|h| h.score.expect("a score")).collect();
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "alpha {alpha:?}: {scores:?}"
        );
    }
    // Keyword-only ranking sees only words: "socks" is in one product's name.
    let mut r = request(&stack, "socks");
    r.hybrid = true;
    r.alpha = Some(0.0);
    assert_eq!(search(&r).await.expect("bm25")[0].product.sku, "SO-1");

    // Filters apply before ranking, to vector and hybrid searches alike.
    let mut r = request(&stack, "running shoes");
    r.filters = parse_where("price<50").expect("valid");
    let hits = search(&r).await.expect("filtered");
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| price(h) < 50.0), "{:?}", skus(&hits));
    r.hybrid = true;
    r.filters = parse_where("price < 50, name != 'Rain jacket'").expect("valid");
    let hits = search(&r).await.expect("filtered hybrid");
    assert_eq!(hits[0].product.sku, "SO-1", "{:?}", skus(&hits));
    assert!(
        hits.iter()
            .all(|h| price(h) < 50.0 && h.product.name.as_deref() != Some("Rain jacket")),
        "{:?}",
        skus(&hits)
    );
    r.filters = parse_where("price >= 100 and description = coffee").expect("valid");
    assert_eq!(skus(&search(&r).await.expect("two conditions")), ["CF-1"]);

    // The CLI: --hybrid --alpha --where --json, and clear refusals.
    let cli = |extra: &[&str]| {
        let model = model_dir().display().to_string();
        let url = stack.weaviate.url();
        let mut args = vec![
            "search",
            "--model",
            &model,
            "--weaviate-url",
            &url,
            "--json",
        ];
        args.extend_from_slice(extra);
        std::process::Command::new(env!("CARGO_BIN_EXE_vecsync"))
            .args(&args)
            .env("LOG_LEVEL", "warn")
            .output()
            .expect("run vecsync search")
    };
    let out = cli(&[
        "--hybrid", "--alpha", "0.5", "--where", "price<50", "running",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines[0]["sku"], "SO-1", "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l["score"].is_number() && l["price"].as_f64() < Some(50.0))
    );
    let out = cli(&["--where", "colour=red", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`colour` is not a property"));
    let out = cli(&["--hybrid", "--alpha", "2", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--alpha must be between 0 and 1"));
}
