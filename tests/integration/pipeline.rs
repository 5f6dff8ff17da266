//! End to end, in-process: real MariaDB, real memcached, the Weaviate test server, the real
//! model. Changes committed in MariaDB must show up in Weaviate with the right properties and
//! the vectors sentence-transformers gives.

use serde_json::Value;
use vecsync::sink::product_id;
use weaviate_test_server::Fault;

use crate::harness::stack::{Stack, assert_same_vector, golden_descriptions, metric, vector_of};
use crate::harness::{DEFAULT_DEADLINE, wait_until};

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_stream_every_op() {
    let stack = Stack::start().await;
    let texts = golden_descriptions();
    let (d1, v1) = &texts[0];
    let (d2, v2) = &texts[1];
    let (d3, v3) = &texts[2];
    // A row that exists before vecsync starts is indexed by the snapshot (op r).
    stack
        .db
        .exec(&format!(
            "INSERT INTO catalog.products (sku, name, description, price) VALUES ('SNAP-1', 'Snap', {}, 12.50)",
            sql_str(d1)
        ))
        .await;
    let running = stack.run_in_process(&["--snapshot", "initial"]);

    let obj = stack
        .wait_object("the snapshot row", "SNAP-1", |o| o.is_some())
        .await
        .expect("object");
    assert_eq!(obj["properties"]["name"], "Snap");
    assert_eq!(obj["properties"]["price"], serde_json::json!(12.5));
    assert_same_vector(&vector_of(&obj), v1);
    // The seed's sample rows too.
    stack
        .wait_object("the seed's TS-001", "TS-001", |o| o.is_some())
        .await;
    assert!(metric("vecsync_events_total", "op=\"r\"") >= 3.0);

    // c: insert.
    stack
        .db
        .exec(&format!(
            "INSERT INTO catalog.products (sku, name, description, price) VALUES ('NEW-1', 'New', {}, 19.99)",
            sql_str(d2)
        ))
        .await;
    let obj = stack
        .wait_object("the inserted row", "NEW-1", |o| o.is_some())
        .await
        .expect("object");
    assert_eq!(obj["properties"]["price"], serde_json::json!(19.99));
    assert_eq!(obj["properties"]["description"], Value::String(d2.clone()));
    assert_same_vector(&vector_of(&obj), v2);

    // u: description change re-embeds.
    stack
        .db
        .exec(&format!(
            "UPDATE catalog.products SET description = {} WHERE sku = 'NEW-1'",
            sql_str(d3)
        ))
        .await;
    let obj = stack
        .wait_object("the new description", "NEW-1", |o| {
            o.is_some_and(|o| o["properties"]["description"].as_str() == Some(d3.as_str()))
        })
        .await
        .expect("object");
    assert_same_vector(&vector_of(&obj), v3);

    // u with a sku change: the old object goes, the new one comes with its vector.
    stack
        .db
        .exec("UPDATE catalog.products SET sku = 'NEW-2' WHERE sku = 'NEW-1'")
        .await;
    let obj = stack
        .wait_object("the renamed sku", "NEW-2", |o| o.is_some())
        .await
        .expect("object");
    assert_same_vector(&vector_of(&obj), v3);
    // The delete and the write of one batch go out concurrently; once the checkpoint covers the
    // change, Weaviate has confirmed both.
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    assert!(
        stack.object("NEW-1").is_none(),
        "the old sku's object was deleted"
    );

    // d: delete.
    stack
        .db
        .exec("DELETE FROM catalog.products WHERE sku = 'SNAP-1'")
        .await;
    stack
        .wait_object("the deleted row to go", "SNAP-1", |o| o.is_none())
        .await;
    stack.wait_in_sync().await;

    // t: truncate removes every object.
    stack.db.exec("TRUNCATE TABLE catalog.products").await;
    wait_until("every object to be removed", DEFAULT_DEADLINE, || {
        let n = stack.weaviate.object_count("Product");
        async move { (n == 0).then_some(()) }
    })
    .await;
    // And the stream goes on after it.
    stack
        .db
        .exec("INSERT INTO catalog.products (sku, name, description, price) VALUES ('AFTER-T', 'After', 'back again', 1.00)")
        .await;
    stack
        .wait_object("a row after the truncate", "AFTER-T", |o| o.is_some())
        .await;
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;

    running.stop().await;
    assert!(
        stack.weaviate.spec_violations().is_empty(),
        "{:?}",
        stack.weaviate.spec_violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_three_update_storm_costs_one_embedding_and_one_write() {
    let stack = Stack::start().await;
    // A batch window and idle gap long enough that three back-to-back statements land in one
    // batch even on a loaded CI machine; coalescing within the batch is what is under test.
    let running = stack.run_in_process(&["--batch-wait-ms", "300", "--batch-idle-ms", "300"]);
    stack
        .wait_object("the seed rows", "TS-001", |o| o.is_some())
        .await;
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    let embedded_before = metric("vecsync_embeddings_computed_total", "");
    let posts_before = batch_posts_with(&stack, "TS-001");

    stack.db.exec(crate::harness::stack::SEED_STORM_SQL).await;
    stack
        .wait_object("the last description", "TS-001", |o| {
            o.is_some_and(|o| o["properties"]["description"] == "new description 3")
        })
        .await;
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    assert_eq!(
        metric("vecsync_embeddings_computed_total", "") - embedded_before,
        1.0,
        "one embedding"
    );
    assert_eq!(
        batch_posts_with(&stack, "TS-001") - posts_before,
        1,
        "one write"
    );
    running.stop().await;
}

/// How many `POST /v1/batch/objects` carried the object of `sku`.
fn batch_posts_with(stack: &Stack, sku: &str) -> usize {
    let id = product_id(sku).to_string();
    stack
        .weaviate
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/batch/objects")
        .filter(|r| {
            r.body
                .as_ref()
                .and_then(|b| b["objects"].as_array())
                .is_some_and(|objs| objs.iter().any(|o| o["id"] == id.as_str()))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_only_updates_keep_the_vector_and_are_not_embedded() {
    let stack = Stack::start().await;
    let running = stack.run_in_process(&[]);
    let before = stack
        .wait_object("the seed rows", "JN-001", |o| o.is_some())
        .await
        .expect("object");
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    let embedded_before = metric("vecsync_embeddings_computed_total", "");
    let skipped_before = metric("vecsync_reembeds_skipped_total", "");

    // An update storm from a batch job: many price changes, separate transactions.
    let mut sql = String::new();
    for cents in 0..200 {
        sql.push_str(&format!(
            "UPDATE catalog.products SET price = {}.{:02} WHERE sku = 'JN-001';\n",
            80 + cents / 100,
            cents % 100
        ));
    }
    stack.db.exec(&sql).await;
    let after = stack
        .wait_object("the last price", "JN-001", |o| {
            o.is_some_and(|o| o["properties"]["price"] == serde_json::json!(81.99))
        })
        .await
        .expect("object");
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    assert_eq!(
        metric("vecsync_embeddings_computed_total", "") - embedded_before,
        0.0,
        "no embedding"
    );
    assert!(metric("vecsync_reembeds_skipped_total", "") - skipped_before >= 1.0);
    assert_eq!(
        vector_of(&after),
        vector_of(&before),
        "the stored vector was kept"
    );
    // No PATCH: each write is the whole object with the vector Weaviate already had.
    let requests = stack.weaviate.requests();
    assert!(requests.iter().all(|r| r.method != "PATCH"), "no PATCH");
    let id = product_id("JN-001").to_string();
    let writes: Vec<&serde_json::Value> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/batch/objects")
        .filter_map(|r| r.body.as_ref())
        .flat_map(|b| b["objects"].as_array().into_iter().flatten())
        .filter(|o| o["id"] == id.as_str())
        .collect();
    assert!(writes.len() >= 2, "the price changes were written");
    for w in writes {
        assert_eq!(
            w["vector"].as_array().map(|v| v.len()),
            Some(384),
            "every write carries the vector"
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_stopped_mid_run_is_a_non_event() {
    let mut stack = Stack::start().await;
    // A long TTL: what is under test is the outage, not expiry.
    let running = stack.run_in_process(&["--cache-ttl-secs", "600"]);
    stack
        .wait_object("the seed rows", "TS-001", |o| o.is_some())
        .await;

    stack.memcached.stop();
    stack
        .db
        .exec("INSERT INTO catalog.products (sku, name, description, price) VALUES ('MC-1', 'While down', 'written while memcached is down', 5.00)")
        .await;
    stack
        .wait_object("a row written during the outage", "MC-1", |o| {
            o.is_some_and(|o| vector_of(o).len() == 384)
        })
        .await;
    assert!(
        metric("vecsync_embedding_cache_errors_total", "") >= 1.0,
        "the outage was counted"
    );

    // Back up: the cache is used again. Moving a product to another sku and back makes each
    // (sku, text) pair embed again; every move waits for the checkpoint, so each is its own
    // batch and nothing is coalesced away. Once memcached answers, a pair seen before hits.
    stack.memcached.restart();
    let hits_before = metric("vecsync_embedding_cache_hits_total", "");
    let mut sku = "MC-1";
    wait_until("the embedding cache to hit again", DEFAULT_DEADLINE, || {
        let (from, to) = if sku == "MC-1" {
            ("MC-1", "MC-1b")
        } else {
            ("MC-1b", "MC-1")
        };
        sku = to;
        let stack = &stack;
        async move {
            stack
                .db
                .exec(&format!(
                    "UPDATE catalog.products SET sku = '{to}' WHERE sku = '{from}'"
                ))
                .await;
            stack
                .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
                .await;
            (metric("vecsync_embedding_cache_hits_total", "") > hits_before).then_some(())
        }
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weaviate_outage_holds_the_position_and_loses_nothing() {
    let stack = Stack::start().await;
    let running = stack.run_in_process(&[]);
    stack
        .wait_object("the seed rows", "TS-001", |o| o.is_some())
        .await;
    let before_outage = stack.db.gtid_binlog_pos().await;
    stack.wait_checkpoint_covers(&before_outage).await;

    stack
        .weaviate
        .faults()
        .inject(Fault::status(503).times(usize::MAX));
    stack
        .db
        .exec("INSERT INTO catalog.products (sku, name, description, price) VALUES ('OUT-1', 'Outage', 'written while Weaviate is down', 3.00)")
        .await;
    let during = stack.db.gtid_binlog_pos().await;
    // The pipeline notices and says so on /readyz, and keeps the checkpoint where it was.
    wait_until("/readyz to report the outage", DEFAULT_DEADLINE, || async {
        (stack.readyz().await == Some(503)).then_some(())
    })
    .await;
    let held = stack.checkpoint().expect("a checkpoint");
    assert!(
        !held.covers(&during.parse().expect("gtid")),
        "the checkpoint moved past an unwritten change"
    );

    stack.weaviate.faults().clear();
    stack
        .wait_object("the row written during the outage", "OUT-1", |o| {
            o.is_some()
        })
        .await;
    stack.wait_checkpoint_covers(&during).await;
    wait_until("/readyz to recover", DEFAULT_DEADLINE, || async {
        (stack.readyz().await == Some(200)).then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_object_goes_to_the_dead_letter_file_and_the_pipeline_goes_on() {
    let stack = Stack::start().await;
    stack.weaviate.faults().fail_objects(
        [product_id("BAD-1")],
        "invalid number property 'price' on class 'Product': requires a float",
        usize::MAX,
    );
    let running = stack.run_in_process(&[]);
    stack
        .db
        .exec(
            "INSERT INTO catalog.products (sku, name, description, price) VALUES ('BAD-1', 'Rejected', 'weaviate refuses this one', 1.00);
             INSERT INTO catalog.products (sku, name, description, price) VALUES ('GOOD-1', 'Accepted', 'and takes this one', 2.00);",
        )
        .await;
    stack
        .wait_object("the accepted row", "GOOD-1", |o| o.is_some())
        .await;
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    assert!(stack.object("BAD-1").is_none());

    let text = std::fs::read_to_string(stack.dead_letter_path()).expect("a dead-letter file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["event"]["after"]["sku"], "BAD-1");
    assert!(matches!(lines[0]["event"]["op"].as_str(), Some("c" | "r")));
    assert!(
        lines[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("requires a float")),
        "{text}"
    );
    assert_eq!(metric("vecsync_dead_letters_total", ""), 1.0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_empty_huge_and_odd_descriptions() {
    let stack = Stack::start().await;
    let running = stack.run_in_process(&[]);
    let huge = "linen ".repeat(10_000); // 60 KB: near TEXT's 64 KiB limit, ~10,000 tokens
    let odd =
        "夏のパーティー 🎉 <b>linen</b> shirt \u{1} tab\there, a back\\slash and a quote's end";
    stack
        .db
        .exec(&format!(
            "INSERT INTO catalog.products (sku, name, description, price) VALUES
               ('NULL-D', 'No description', NULL, NULL),
               ('EMPTY-D', 'Empty description', '', 0.00),
               ('HUGE-D', 'Huge description', {}, 1.00),
               ('ODD-D', 'Odd description', {}, 2.00)",
            sql_str(&huge),
            sql_str(odd)
        ))
        .await;
    let obj = stack
        .wait_object("the NULL description", "NULL-D", |o| o.is_some())
        .await
        .expect("object");
    assert!(vector_of(&obj).is_empty(), "no description, no vector");
    assert!(obj["properties"].get("price").is_none_or(Value::is_null));
    let obj = stack
        .wait_object("the empty description", "EMPTY-D", |o| o.is_some())
        .await
        .expect("object");
    assert!(vector_of(&obj).is_empty());
    let obj = stack
        .wait_object("the huge description", "HUGE-D", |o| o.is_some())
        .await
        .expect("object");
    assert_eq!(
        vector_of(&obj).len(),
        384,
        "a huge text is truncated and embedded"
    );
    assert_eq!(
        obj["properties"]["description"].as_str().map(str::len),
        Some(huge.len())
    );
    let obj = stack
        .wait_object("the odd description", "ODD-D", |o| o.is_some())
        .await
        .expect("object");
    assert_eq!(obj["properties"]["description"], odd);
    assert_eq!(vector_of(&obj).len(), 384);
    stack.wait_in_sync().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_events_writes_debezium_envelopes() {
    let stack = Stack::start().await;
    let path = stack.dir.path().join("events.jsonl");
    let running = stack.run_in_process(&["--emit-events", &path.display().to_string()]);
    // The snapshot first, so the update below is streamed, not read by the snapshot.
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    stack
        .db
        .exec("UPDATE catalog.products SET price = 21.00 WHERE sku = 'TS-001'")
        .await;
    stack
        .wait_object("the update", "TS-001", |o| {
            o.is_some_and(|o| o["properties"]["price"] == serde_json::json!(21.0))
        })
        .await;
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    running.stop().await;
    let text = std::fs::read_to_string(&path).expect("events file");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let update = events
        .iter()
        .find(|e| e["op"] == "u")
        .unwrap_or_else(|| panic!("no update event in:\n{text}"));
    assert_eq!(update["before"]["price"], "19.99");
    assert_eq!(update["after"]["price"], "21.00");
    assert_eq!(update["source"]["table"], "products");
    assert!(
        update["source"]["gtid"]
            .as_str()
            .is_some_and(|g| g.split('-').count() == 3)
    );
    assert_eq!(
        events.iter().filter(|e| e["op"] == "r").count(),
        2,
        "the snapshot's two seed rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_endpoints() {
    let stack = Stack::start().await;
    let running = stack.run_in_process(&[]);
    stack
        .wait_object("the seed rows", "TS-001", |o| o.is_some())
        .await;
    wait_until("/readyz to answer 200", DEFAULT_DEADLINE, || async {
        (stack.readyz().await == Some(200)).then_some(())
    })
    .await;
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    let base = format!("http://127.0.0.1:{}", stack.metrics_port);
    let healthz = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(healthz.status().as_u16(), 200);
    let body = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    for name in [
        "vecsync_events_total",
        "vecsync_embeddings_computed_total",
        "vecsync_embedding_cache_hits_total",
        "vecsync_embedding_cache_misses_total",
        "vecsync_embedding_cache_errors_total",
        "vecsync_reembeds_skipped_total",
        "vecsync_weaviate_requests_total",
        "vecsync_weaviate_failures_total",
        "vecsync_dead_letters_total",
        "vecsync_batch_size",
        "vecsync_binlog_lag_seconds",
        "vecsync_commit_to_visible_seconds",
        "vecsync_checkpoint_info",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}:\n{body}");
    }
    let gtid = stack.db.gtid_binlog_pos().await;
    assert!(
        body.contains(&format!("vecsync_checkpoint_info{{gtid=\"{gtid}\"}} 1")),
        "{body}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_change_of_an_object_missing_from_weaviate_writes_it_whole() {
    let stack = Stack::start().await;
    let running = stack.run_in_process(&[]);
    stack
        .wait_object("the seed rows", "TS-001", |o| o.is_some())
        .await;
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    // Someone removes the object behind vecsync's back.
    let url = format!(
        "{}/v1/objects/Product/{}",
        stack.weaviate.url(),
        product_id("TS-001")
    );
    let status = reqwest::Client::new()
        .delete(&url)
        .send()
        .await
        .expect("delete")
        .status();
    assert_eq!(status.as_u16(), 204);
    assert!(stack.object("TS-001").is_none());

    // A price-only change: vecsync asks Weaviate what it holds, finds nothing, and writes the
    // whole object again with a fresh vector of its (unchanged) description.
    stack
        .db
        .exec("UPDATE catalog.products SET price = 24.00 WHERE sku = 'TS-001'")
        .await;
    let obj = stack
        .wait_object("the object to be written again", "TS-001", |o| o.is_some())
        .await
        .expect("object");
    assert_eq!(obj["properties"]["price"], serde_json::json!(24.0));
    assert_eq!(vector_of(&obj).len(), 384);
    let golden = vecsync::embed::Embedder::load(&crate::harness::stack::model_dir())
        .expect("model")
        .embed(&["A classic crew-neck t-shirt made from 100% premium cotton."])
        .expect("embed")
        .remove(0);
    crate::harness::stack::assert_same_vector(&vector_of(&obj), &golden);
    assert!(
        stack
            .weaviate
            .requests()
            .iter()
            .all(|r| r.method != "PATCH"),
        "no PATCH"
    );
    running.stop().await;
}
