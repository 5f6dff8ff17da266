//! `vecsync run --reindex` with the real binary: a new index is built into a new class while the
//! old one serves, the alias `Product` switches to it, searches keep answering the whole time
//! (only the one-time migration from the seed's plain class has a gap), a crash mid-re-index
//! resumes, and a previous embedding that is not the recorded one is refused.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use vecsync::sink::product_id;

use crate::harness::stack::{Stack, model_dir, vector_of};
use crate::harness::wait_until;

const NEW_TEMPLATE: &str = "{name}. {description}";
const LONG: Duration = Duration::from_secs(180);
/// Most writes the writer makes during a re-index.
const WRITES: usize = 300;

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}

async fn stop(mut child: Child) {
    sigterm(&child);
    let status = wait_until("vecsync to exit", Duration::from_secs(60), || {
        let status = child.try_wait().expect("try_wait");
        async move { status }
    })
    .await;
    assert!(status.success(), "vecsync exited with {status}");
}

fn seed(test: &str) -> u64 {
    let seed = std::env::var("VECSYNC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{test}: seed {seed} (replay with VECSYNC_TEST_SEED={seed})");
    seed
}

async fn insert_products(stack: &Stack, count: usize) {
    let values: Vec<String> = (0..count)
        .map(|i| {
            format!(
                "('P-{i}', 'Product {i}', 'a sturdy item number {i} in colour {}', {}.50)",
                i % 7,
                i + 1
            )
        })
        .collect();
    stack
        .db
        .exec(&format!(
            "INSERT INTO catalog.products (sku, name, description, price) VALUES {};",
            values.join(",")
        ))
        .await;
}

/// The class the alias `Product` points to, asked over HTTP as a reader would.
async fn alias_target(stack: &Stack) -> Option<String> {
    let r = reqwest::get(format!("{}/v1/aliases/Product", stack.weaviate.url()))
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    let body: Value = r.json().await.ok()?;
    body["class"].as_str().map(str::to_owned)
}

/// Change the catalog until `stop`, at most `WRITES` times: description updates and inserts,
/// about 30 a second (bounded, so a loaded machine's slower embedding still catches up).
fn writer(stack: &Stack, seed: u64, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    let url = stack.db.url();
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let pool = mysql_async::Pool::new(url.as_str());
        let mut conn = pool.get_conn().await.expect("connect");
        let mut writes = 0;
        let mut pace = tokio::time::interval(Duration::from_millis(30));
        while !stop.load(Ordering::SeqCst) && writes < WRITES {
            pace.tick().await;
            let sql = if rng.random_bool(0.7) {
                let n = rng.random_range(0..40);
                format!(
                    "UPDATE catalog.products SET description = 'changed {} text of {n}' WHERE sku = 'P-{n}'",
                    rng.random_range(0..1000)
                )
            } else {
                format!(
                    "INSERT INTO catalog.products (sku, name, description, price) VALUES ('W-{writes}', 'Written {writes}', 'written while re-indexing {writes}', 9.99)"
                )
            };
            mysql_async::prelude::Queryable::query_drop(&mut conn, sql)
                .await
                .expect("write");
            writes += 1;
        }
        drop(conn);
        pool.disconnect().await.expect("disconnect");
        writes
    })
}

/// Searches `Product` (a nearVector query, as a shop's search does) until `stop`; the times of
/// the failed ones, and how many succeeded.
fn poller(stop: Arc<AtomicBool>, url: String) -> tokio::task::JoinHandle<(Vec<Instant>, usize)> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let vector: Vec<f32> = (0..384).map(|i| ((i % 13) as f32 - 6.0) / 50.0).collect();
        let query = json!({
            "query": format!(
                "{{ Get {{ Product(nearVector:{{vector:{}}}, limit: 3) {{ sku _additional {{ id distance }} }} }} }}",
                serde_json::to_string(&vector).expect("json")
            )
        });
        let mut failures = Vec::new();
        let mut ok = 0;
        let mut pace = tokio::time::interval(Duration::from_millis(5));
        while !stop.load(Ordering::SeqCst) {
            pace.tick().await;
            let answered = async {
                let r = client
                    .post(format!("{url}/v1/graphql"))
                    .json(&query)
                    .send()
                    .await
                    .ok()?;
                let body: Value = r.json().await.ok()?;
                let hits = body.pointer("/data/Get/Product")?.as_array()?;
                (body.get("errors").is_none() && !hits.is_empty()).then_some(())
            }
            .await;
            match answered {
                Some(()) => ok += 1,
                None => failures.push(Instant::now()),
            }
        }
        (failures, ok)
    })
}

fn render(name: &str, description: Option<&str>) -> String {
    format!("{name}. {}", description.unwrap_or_default())
}

fn same_vector(got: &[f32], want: &[f32]) -> bool {
    if got.len() != want.len() || got.is_empty() {
        return false;
    }
    let dot: f32 = got.iter().zip(want).map(|(a, b)| a * b).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(got) * norm(want)) >= 0.99999
}

/// Wait until `class` holds exactly the table's rows, each with the vector of a fresh embedding
/// of `{name}. {description}`.
async fn wait_class_equals_table(stack: &Stack, class: &str) {
    let embedder = vecsync::embed::Embedder::load(&model_dir()).expect("model");
    // Fresh embeddings by text, kept across polls.
    let cache: RefCell<HashMap<String, Vec<f32>>> = RefCell::default();
    wait_until(
        &format!("`{class}` to equal catalog.products with the new text's vectors"),
        LONG,
        || {
            let (embedder, cache) = (&embedder, &cache);
            async move {
                let table = stack.table().await;
                let mut cache = cache.borrow_mut();
                if stack.weaviate.object_count(class) != table.len() {
                    return None;
                }
                let texts: Vec<String> = table
                    .values()
                    .map(|(n, d, _)| render(n, d.as_deref()))
                    .filter(|t| !cache.contains_key(t))
                    .collect();
                if !texts.is_empty() {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    let vectors = embedder.embed(&refs).expect("embed");
                    cache.extend(texts.into_iter().zip(vectors));
                }
                for (sku, (name, description, price)) in &table {
                    let obj = stack.weaviate.object(class, product_id(sku))?;
                    let props = &obj["properties"];
                    let want_price = price.as_deref().map(|p| {
                        Value::Number(vecsync::sink::decimal_to_json_number(p).expect("decimal"))
                    });
                    if props["name"] != Value::String(name.clone())
                        || props.get("description").and_then(Value::as_str)
                            != description.as_deref()
                        || props.get("price").cloned().filter(|p| !p.is_null()) != want_price
                    {
                        return None;
                    }
                    let want = &cache[&render(name, description.as_deref())];
                    if !same_vector(&vector_of(&obj), want) {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await
}

/// Run vecsync normally until the plain class `Product` holds the table, then stop it.
async fn seed_index(stack: &Stack) {
    let child = stack.spawn_binary(&[]);
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    let rows = stack.table().await.len();
    wait_until("the seed index", LONG, || {
        let n = stack.weaviate.object_count("Product");
        async move { (n == rows).then_some(()) }
    })
    .await;
    stop(child).await;
}

/// The value of a metric on the binary's /metrics.
async fn scrape(stack: &Stack, name: &str) -> Option<f64> {
    let body = reqwest::get(format!("http://127.0.0.1:{}/metrics", stack.metrics_port))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// Wait for the alias to point to a class other than `from` (None: any), watching `/readyz`
/// for the re-index's progress meanwhile; returns the class and whether progress was shown.
async fn wait_switch(stack: &Stack, from: Option<&str>) -> (String, bool) {
    let progress_shown = Cell::new(false);
    let class = wait_until("the alias to switch", LONG, || {
        let shown = &progress_shown;
        async move {
            if let Some((_, body)) = stack.readyz_body().await
                && body.contains("re-index:")
            {
                shown.set(true);
            }
            alias_target(stack)
                .await
                .filter(|c| Some(c.as_str()) != from)
        }
    })
    .await;
    (class, progress_shown.get())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_with_writes_going_on_switches_the_alias_while_searches_answer() {
    let seed = seed("a_template_change_with_writes_going_on_switches_the_alias");
    let stack = Stack::start().await;
    insert_products(&stack, 60).await;
    seed_index(&stack).await;

    let stop_writes = Arc::new(AtomicBool::new(false));
    let stop_search = Arc::new(AtomicBool::new(false));
    let searches = poller(stop_search.clone(), stack.weaviate.url());
    let writes = writer(&stack, seed, stop_writes.clone());
    let child = stack.spawn_binary(&[
        "--reindex",
        "--embed-template",
        NEW_TEMPLATE,
        "--snapshot-chunk-rows",
        "16",
    ]);
    let (target, progress_shown) = wait_switch(&stack, None).await;
    assert!(target.starts_with("Product_"), "{target}");
    assert!(progress_shown, "/readyz showed the re-index's progress");
    stop_writes.store(true, Ordering::SeqCst);
    let written = writes.await.expect("writer");

    // A write after the switch lands in the new class.
    stack
        .db
        .exec("UPDATE catalog.products SET name = 'Organic Tee' WHERE sku = 'TS-001'")
        .await;
    wait_class_equals_table(&stack, &target).await;
    stop_search.store(true, Ordering::SeqCst);
    let (failures, answered) = searches.await.expect("poller");
    let gap = scrape(&stack, "vecsync_reindex_switch_gap_seconds")
        .await
        .expect("the gap metric");
    let span = match (failures.first(), failures.last()) {
        (Some(a), Some(b)) => *b - *a,
        _ => Duration::ZERO,
    };
    println!(
        "{written} writes during the re-index; searches: {answered} answered, {} failed within \
         {span:?}; the process measured the migration gap as {:.1} ms",
        failures.len(),
        gap * 1000.0
    );
    assert!(answered > 0);
    // Failures fall in one window no longer than the gap the process measured (plus the
    // poller's own scheduling on a loaded machine): only the migration gap fails. The gap is
    // tens of milliseconds on an idle machine; the bound only catches a broken switch.
    assert!(
        span <= Duration::from_secs_f64(gap) + Duration::from_secs(1),
        "searches failed only in the migration gap ({gap} s), not over {span:?}"
    );
    assert!(gap < 10.0, "gap {gap} s");
    // The seed's plain class is gone; `Product` is the alias now.
    assert!(stack.weaviate.class("Product").is_none());
    let main = vecsync::checkpoint::read(&stack.checkpoint_path())
        .expect("read")
        .expect("checkpoint");
    assert_eq!(main.embedding.expect("record").class, target);
    assert!(
        !vecsync::pipeline::reindex::reindex_checkpoint(&stack.checkpoint_path()).exists(),
        "the re-index checkpoint became the main one"
    );

    // `vecsync search` works through the alias.
    let out = Command::new(env!("CARGO_BIN_EXE_vecsync"))
        .args(["search", "organic cotton tee", "--json", "--limit", "3"])
        .args(["--weaviate-url", &stack.weaviate.url()])
        .args(["--model", &model_dir().display().to_string()])
        .args(["--embed-template", NEW_TEMPLATE])
        .stderr(Stdio::inherit())
        .output()
        .expect("run vecsync search");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"TS-001\""), "{text}");
    stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_re_index_from_an_alias_switches_without_a_gap_and_drops_the_old_class() {
    let stack = Stack::start().await;
    insert_products(&stack, 30).await;
    seed_index(&stack).await;
    // First re-index with the same embedding: only the migration to an alias.
    let child = stack.spawn_binary(&["--reindex"]);
    let (first, _) = wait_switch(&stack, None).await;
    stop(child).await;

    let stop_search = Arc::new(AtomicBool::new(false));
    let searches = poller(stop_search.clone(), stack.weaviate.url());
    let child = stack.spawn_binary(&["--reindex", "--embed-template", NEW_TEMPLATE, "--drop-old"]);
    let (second, _) = wait_switch(&stack, Some(&first)).await;
    stack
        .db
        .exec("UPDATE catalog.products SET description = 'after the switch' WHERE sku = 'P-3'")
        .await;
    wait_class_equals_table(&stack, &second).await;
    stop_search.store(true, Ordering::SeqCst);
    let (failures, answered) = searches.await.expect("poller");
    println!(
        "second re-index: {answered} searches answered, {} failed",
        failures.len()
    );
    assert!(answered > 0);
    assert!(
        failures.is_empty(),
        "an alias switch has no gap: {} searches failed",
        failures.len()
    );
    assert_eq!(
        scrape(&stack, "vecsync_reindex_switch_gap_seconds").await,
        Some(0.0)
    );
    wait_until("--drop-old to delete the old class", LONG, || {
        let gone = stack.weaviate.class(&first).is_none();
        async move { gone.then_some(()) }
    })
    .await;
    stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_a_re_index_resumes_it_and_ends_equal_to_the_table() {
    let seed = seed("a_crash_in_the_middle_of_a_re_index_resumes_it");
    let stack = Stack::start().await;
    insert_products(&stack, 150).await;
    seed_index(&stack).await;

    let stop_writes = Arc::new(AtomicBool::new(false));
    let writes = writer(&stack, seed, stop_writes.clone());
    let flags = [
        "--reindex",
        "--embed-template",
        NEW_TEMPLATE,
        "--snapshot-chunk-rows",
        "8",
    ];
    let mut child = stack.spawn_binary(&flags);
    let building = vecsync::pipeline::reindex::reindex_checkpoint(&stack.checkpoint_path());
    let rows_at_kill = wait_until("the re-index to be half-way", LONG, || {
        let rows = vecsync::checkpoint::read(&building)
            .ok()
            .flatten()
            .and_then(|c| c.snapshot)
            .map(|s| s.rows_done)
            .filter(|&r| r > 0);
        async move { rows }
    })
    .await;
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert!(
        alias_target(&stack).await.is_none(),
        "killed before the switch"
    );
    println!("killed with {rows_at_kill} snapshot rows in the new class");

    let child = stack.spawn_binary(&flags);
    let (target, _) = wait_switch(&stack, None).await;
    stop_writes.store(true, Ordering::SeqCst);
    writes.await.expect("writer");
    wait_class_equals_table(&stack, &target).await;
    stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_interrupted_between_the_delete_and_the_alias_is_completed_at_the_next_start() {
    let stack = Stack::start().await;
    insert_products(&stack, 60).await;
    seed_index(&stack).await;
    let flags = [
        "--reindex",
        "--embed-template",
        NEW_TEMPLATE,
        "--snapshot-chunk-rows",
        "8",
    ];
    let mut child = stack.spawn_binary(&flags);
    let building = vecsync::pipeline::reindex::reindex_checkpoint(&stack.checkpoint_path());
    wait_until("the re-index to have started", LONG, || {
        let started = vecsync::checkpoint::read(&building)
            .ok()
            .flatten()
            .and_then(|c| c.snapshot)
            .is_some_and(|s| s.rows_done > 0);
        async move { started.then_some(()) }
    })
    .await;
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    // The crash came right after the migration's first request: the plain class is gone, the
    // alias not there yet.
    let deleted = reqwest::Client::new()
        .delete(format!("{}/v1/schema/Product", stack.weaviate.url()))
        .send()
        .await
        .expect("delete the class");
    assert!(deleted.status().is_success());

    // A normal start refuses while the re-index is unfinished...
    let err = vecsync::pipeline::run(
        stack.config(&["--embed-template", NEW_TEMPLATE]),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect_err("refused");
    assert!(err.to_string().contains("--reindex"), "{err}");

    // ...and a start with the same flags completes it: the alias is created at once, the rest
    // of the snapshot goes on in the new class.
    let child = stack.spawn_binary(&flags);
    let (target, _) = wait_switch(&stack, None).await;
    wait_class_equals_table(&stack, &target).await;
    assert!(
        !building.exists(),
        "the re-index checkpoint became the main one"
    );
    stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_change_to_a_remote_embedder_keeps_the_old_class_up_to_date_with_the_previous_model()
 {
    let infinity = crate::harness::infinity::Infinity::start().await;
    let stack = Stack::start().await;
    insert_products(&stack, 20).await;
    seed_index(&stack).await;
    let local = model_dir().display().to_string();
    let remote = [
        "--reindex",
        "--embedder",
        &infinity.url(),
        "--embedder-model",
        crate::harness::infinity::SERVED_MODEL,
        "--embed-template",
        NEW_TEMPLATE,
    ];

    // The index was built in-process: the remote model with the recorded template is another
    // embedding, so the previous one must be named.
    let err = vecsync::pipeline::run(
        stack.config(&remote),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect_err("refused");
    let shown = err.to_string();
    assert!(
        shown.contains("--previous-model") && shown.contains("remote model"),
        "{shown}"
    );

    let mut flags = remote.to_vec();
    flags.extend(["--previous-model", &local]);
    let child = stack.spawn_binary(&flags);
    let (target, _) = wait_switch(&stack, None).await;
    // Vectors from infinity equal the in-process model's (the same files).
    wait_class_equals_table(&stack, &target).await;
    stop(child).await;
}

/// A copy of the model directory (links, no copied weights) whose config.json differs by a
/// byte: another model as far as the fingerprint goes.
fn other_model() -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("tempdir");
    let source = model_dir();
    for entry in std::fs::read_dir(&source).expect("model dir") {
        let entry = entry.expect("entry");
        let to = copy.path().join(entry.file_name());
        if entry.file_name() == "config.json" {
            let mut text = std::fs::read_to_string(entry.path()).expect("config");
            text.push('\n');
            std::fs::write(&to, text).expect("write");
        } else {
            std::os::unix::fs::symlink(entry.path(), &to).expect("link");
        }
    }
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_embedding_that_is_not_the_recorded_one_is_refused() {
    let stack = Stack::start().await;
    let running = stack.run_in_process(&[]);
    stack
        .wait_object("the seed rows", "TS-001", |o| o.is_some())
        .await;
    running.stop().await;

    let other = other_model();
    let config = stack.config(&[
        "--reindex",
        "--embed-template",
        NEW_TEMPLATE,
        "--previous-model",
        &other.path().display().to_string(),
    ]);
    let err = vecsync::pipeline::run(config, tokio_util::sync::CancellationToken::new())
        .await
        .expect_err("refused");
    let shown = format!("{:#}", anyhow::Error::from(err));
    assert!(
        shown.contains("--previous-model") && shown.contains("was built with embedding"),
        "{shown}"
    );
    assert!(alias_target(&stack).await.is_none(), "nothing was switched");
    assert!(stack.weaviate.class("Product").is_some(), "nothing dropped");
}
