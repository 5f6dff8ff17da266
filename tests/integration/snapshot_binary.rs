//! Snapshots end to end with the real binary (issue 8): a kill -9 in the middle of a chunked
//! snapshot resumes after the last confirmed chunk and ends with the index equal to the table;
//! a re-snapshot of an unchanged table runs the model zero times and writes nothing; a snapshot
//! into an index that holds another table state ends equal to the table.
//!
//! "Equal to the table" is checked row by row: the object ids (the product id of each sku), the
//! properties, and each vector against the model's embedding of the row's description, computed
//! here in the test.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use vecsync::checkpoint::CheckpointData;
use vecsync::sink::{Product, WeaviateConfig, WeaviateSink, WriteOp, decimal_to_json_number};
use vecsync::source::MAX_CHUNKS_AHEAD;
use vecsync::source::snapshot::{SNAPSHOT_CHUNKS_TOTAL, SNAPSHOT_ROWS_TOTAL, SNAPSHOT_RUNNING};
use vecsync::telemetry::{CACHE_HITS_TOTAL, EMBEDDINGS_COMPUTED_TOTAL};

use crate::harness::stack::{Stack, assert_same_vector, model_dir, vector_of};
use crate::harness::wait_until;
use crate::snapshot_model::seed;

/// Descriptions the tests' rows use: few distinct texts, so the debug-build model has little to
/// do while every row with text still needs a vector.
const TEXTS: [&str; 12] = [
    "A classic crew-neck t-shirt made from premium cotton.",
    "Slim fit jeans crafted from stretch denim for comfort.",
    "Lightweight breathable linen shirt for hot summer days.",
    "Heavy wool coat that keeps you warm through snow and wind.",
    "Five stainless steel kitchen knives with a wooden block.",
    "Durable kids' backpack with padded straps and a pencil pocket.",
    "Waterproof hiking boots with a grippy rubber sole.",
    "A ceramic mug that keeps coffee hot for an hour.",
    "Noise-cancelling headphones with a thirty-hour battery.",
    "An ergonomic office chair with adjustable lumbar support.",
    "Organic green tea leaves from high mountain gardens.",
    "A stainless steel water bottle that never leaks.",
];

fn sql_text(t: Option<&str>) -> String {
    match t {
        None => "NULL".into(),
        Some(t) => format!("'{}'", t.replace('\'', "''")),
    }
}

/// `vecsync run` flags of this stack with `--memcached none` (so no cache hit can spare the
/// model) and `extra`.
fn args_without_cache(stack: &Stack, extra: &[&str]) -> Vec<String> {
    let mut args = stack.args(extra);
    let at = args
        .iter()
        .position(|a| a == "--memcached")
        .expect("the stack passes --memcached")
        + 1;
    args[at] = "none".into();
    args
}

/// The running binary; killed if a failing test drops it, so no process outlives the test.
struct Vecsync(Option<Child>);

impl Vecsync {
    fn spawn(args: Vec<String>) -> Vecsync {
        let child = Command::new(env!("CARGO_BIN_EXE_vecsync"))
            .arg("run")
            .args(args)
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the vecsync binary");
        Vecsync(Some(child))
    }

    fn kill9(&mut self) {
        let mut child = self.0.take().expect("running");
        child.kill().expect("kill -9 vecsync");
        child.wait().expect("reap vecsync");
    }

    /// SIGTERM, then wait for a clean exit.
    async fn stop(mut self) {
        let mut child = self.0.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let status = wait_until("vecsync to exit", Duration::from_secs(60), || {
            let status = child.try_wait().expect("try_wait");
            async move { status }
        })
        .await;
        assert!(status.success(), "vecsync exited with {status}");
    }
}

impl Drop for Vecsync {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn checkpoint_data(path: &Path) -> Option<CheckpointData> {
    vecsync::checkpoint::read(path).expect("readable checkpoint")
}

/// The sum of a metric's series on the binary's `/metrics`, when it answers.
async fn scrape(port: u16, name: &str) -> Option<f64> {
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                let metric = key.split('{').next()?;
                (metric == name).then(|| value.parse::<f64>().ok())?
            })
            .sum(),
    )
}

/// Wait until the running binary has read at least `min_chunks` snapshot chunks, read its last
/// one, and its sweep is done (the checkpoint no longer records a snapshot in progress).
async fn wait_snapshot_done(stack: &Stack, min_chunks: f64) {
    let path = stack.checkpoint_path();
    let port = stack.metrics_port;
    wait_until(
        "the snapshot and its sweep to finish",
        Duration::from_secs(180),
        || {
            let path = path.clone();
            async move {
                let chunks = scrape(port, SNAPSHOT_CHUNKS_TOTAL).await?;
                let running = scrape(port, SNAPSHOT_RUNNING).await?;
                let done = checkpoint_data(&path).is_some_and(|c| c.snapshot.is_none());
                (chunks >= min_chunks && running == 0.0 && done).then_some(())
            }
        },
    )
    .await;
}

/// Wait until the checkpoint covers the server's current position.
async fn wait_caught_up(stack: &Stack) {
    let end = stack.db.gtid_binlog_pos().await;
    stack.wait_checkpoint_covers(&end).await;
}

/// The model's vector for each text, computed in this process.
async fn embed_all(texts: BTreeSet<String>) -> HashMap<String, Vec<f32>> {
    let texts: Vec<String> = texts.into_iter().collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = vecsync::embed::Embedder::load(&model_dir())
            .expect("load the model")
            .embed(&refs)
            .expect("embed");
        texts.into_iter().zip(vectors).collect()
    })
    .await
    .expect("join")
}

/// The index equals the table: the same ids and properties (`wait_in_sync`), and every vector
/// is the model's embedding of the row's description (none for NULL or empty text).
async fn assert_index_equals_table(stack: &Stack) {
    stack.wait_in_sync().await;
    let table = stack.table().await;
    let texts: BTreeSet<String> = table
        .values()
        .filter_map(|(_, d, _)| d.clone())
        .filter(|d| !d.is_empty())
        .collect();
    let want = embed_all(texts).await;
    for (sku, (_, description, _)) in &table {
        let obj = stack
            .object(sku)
            .unwrap_or_else(|| panic!("{sku} is indexed"));
        match description.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => assert_same_vector(&vector_of(&obj), &want[d]),
            None => assert!(vector_of(&obj).is_empty(), "{sku} has no text but a vector"),
        }
    }
    assert_eq!(
        stack.weaviate.object_count("Product"),
        table.len(),
        "no object beyond the table's rows"
    );
}

/// The table's rows `first..=last` (explicit ids, sku `S-<id>`): mostly NULL descriptions,
/// every 25th row one of [`TEXTS`], every 25th (offset 1) an empty description.
async fn insert_rows(stack: &Stack, first: u32, last: u32) {
    let rows: Vec<String> = (first..=last)
        .map(|id| {
            let text = match id % 25 {
                0 => Some(TEXTS[id as usize % TEXTS.len()]),
                1 => Some(""),
                _ => None,
            };
            format!(
                "({id}, 'S-{id}', 'Product {id}', {}, {}.{:02})",
                sql_text(text),
                id % 500,
                id % 100
            )
        })
        .collect();
    for part in rows.chunks(1000) {
        stack
            .db
            .exec(&format!(
                "INSERT INTO catalog.products (id, sku, name, description, price) VALUES {}",
                part.join(",")
            ))
            .await;
    }
}

/// Random catalog changes over the whole key range (rows already copied and not yet copied):
/// inserts, description changes (text, NULL, empty), price and name updates, sku changes,
/// deletes, and small multi-statement transactions.
struct Writer {
    rng: StdRng,
    next_id: u32,
    inserted: u64,
    statements: u64,
}

impl Writer {
    fn new(seed: u64, max_id: u32) -> Self {
        Writer {
            rng: StdRng::seed_from_u64(seed),
            next_id: max_id,
            inserted: 0,
            statements: 0,
        }
    }

    fn text(&mut self) -> Option<&'static str> {
        match self.rng.random_range(0..10) {
            0..=5 => Some(TEXTS[self.rng.random_range(0..TEXTS.len())]),
            6 => Some(""),
            _ => None,
        }
    }

    fn statement(&mut self) -> String {
        let id = self.rng.random_range(1..=self.next_id);
        let table = "catalog.products";
        self.statements += 1;
        match self.rng.random_range(0..20) {
            0..=4 => {
                let text = self.text();
                format!(
                    "UPDATE {table} SET description = {} WHERE id = {id};",
                    sql_text(text)
                )
            }
            5..=7 => format!(
                "UPDATE {table} SET price = {}.{:02} WHERE id = {id};",
                self.rng.random_range(1..900),
                self.rng.random_range(0..100)
            ),
            8 => format!(
                "UPDATE {table} SET name = 'Renamed {id} {}' WHERE id = {id};",
                self.statements
            ),
            9 | 10 => format!(
                "UPDATE {table} SET sku = 'K-{id}-{}' WHERE id = {id};",
                self.statements
            ),
            11..=13 => format!("DELETE FROM {table} WHERE id = {id};"),
            14..=17 => {
                self.next_id += 1;
                self.inserted += 1;
                let n = self.next_id;
                let text = self.text();
                format!(
                    "INSERT INTO {table} (id, sku, name, description, price) VALUES ({n}, 'N-{n}', 'New {n}', {}, 5.00);",
                    sql_text(text)
                )
            }
            _ => {
                self.next_id += 1;
                self.inserted += 1;
                let n = self.next_id;
                let other = self.rng.random_range(1..n);
                format!(
                    "BEGIN; UPDATE {table} SET price = price + 1, sku = 'T-{id}-{s}' WHERE id = {id};
                     INSERT INTO {table} (id, sku, name, description, price) VALUES ({n}, 'N-{n}', 'New {n}', {}, 7.00);
                     DELETE FROM {table} WHERE id = {other}; COMMIT;",
                    sql_text(Some(TEXTS[n as usize % TEXTS.len()])),
                    s = self.statements
                )
            }
        }
    }

    async fn write(&mut self, stack: &Stack, count: usize) {
        let sql: String = (0..count).map(|_| self.statement() + "\n").collect();
        stack.db.exec(&sql).await;
    }
}

/// Wait until the checkpoint records a snapshot in progress with at least `chunks` confirmed.
async fn wait_confirmed_chunks(path: &Path, chunks: u64) -> CheckpointData {
    let path: PathBuf = path.to_owned();
    wait_until(
        "the checkpoint to record confirmed snapshot chunks",
        Duration::from_secs(120),
        || {
            let data = checkpoint_data(&path)
                .filter(|c| c.snapshot.as_ref().is_some_and(|s| s.next_seq >= chunks));
            async move { data }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_snapshot_resumes_after_the_last_confirmed_chunk() {
    let seed = seed("kill_9_mid_snapshot_resumes_after_the_last_confirmed_chunk");
    const ROWS: u32 = 3_000;
    const CHUNK: u64 = 50;
    const KILL_AT: u64 = 26; // of about 60 chunks
    let stack = Stack::start().await;
    // Ids 1 and 2 are the seed's two rows.
    insert_rows(&stack, 3, ROWS + 2).await;
    let initial_rows = u64::from(ROWS) + 2;
    let mut writer = Writer::new(seed, ROWS + 2);
    // Writes before vecsync first starts.
    writer.write(&stack, 40).await;

    // Slow every batch write down, so the snapshot is still running when the test looks at the
    // checkpoint (it waits on confirmed chunks, not on time).
    stack.weaviate.faults().inject(
        weaviate_test_server::Fault::delay(Duration::from_millis(100))
            .times(1_000_000)
            .on("POST", "/v1/batch/objects"),
    );
    let chunk = CHUNK.to_string();
    let mut first = Vecsync::spawn(stack.args(&["--snapshot-chunk-rows", &chunk]));
    // Writes while the snapshot runs, interleaved with its progress.
    let mut target = 4;
    while target < KILL_AT {
        wait_confirmed_chunks(&stack.checkpoint_path(), target).await;
        writer.write(&stack, 8).await;
        target += 4;
    }
    wait_confirmed_chunks(&stack.checkpoint_path(), KILL_AT).await;
    first.kill9();
    let at_kill = checkpoint_data(&stack.checkpoint_path()).expect("a checkpoint");
    let progress = at_kill
        .snapshot
        .clone()
        .expect("the snapshot was in progress at the kill");
    assert!(progress.after_key.is_some(), "{progress:?}");
    // The first run read at most the confirmed chunks and MAX_CHUNKS_AHEAD more (the source
    // never has more unconfirmed chunks, and a chunk is confirmed only after the checkpoint
    // that records it is stored).
    let first_run_bound = (progress.next_seq + MAX_CHUNKS_AHEAD as u64) * CHUNK;

    // Writes while vecsync is down.
    writer.write(&stack, 40).await;

    let second = Vecsync::spawn(stack.args(&["--snapshot-chunk-rows", &chunk]));
    // Writes while the resumed snapshot runs, as long as it runs.
    let mut target = progress.next_seq + 3;
    loop {
        let path = stack.checkpoint_path();
        let state = wait_until(
            "the resumed snapshot to progress or finish",
            Duration::from_secs(120),
            || {
                let c = checkpoint_data(&path);
                async move {
                    match c.and_then(|c| c.snapshot) {
                        None => Some(None),
                        Some(s) if s.next_seq >= target => Some(Some(s.next_seq)),
                        Some(_) => None,
                    }
                }
            },
        )
        .await;
        if state.is_none() {
            break;
        }
        writer.write(&stack, 8).await;
        target += 4;
    }
    wait_snapshot_done(&stack, 1.0).await;
    let second_run_rows = scrape(stack.metrics_port, SNAPSHOT_ROWS_TOTAL)
        .await
        .expect("metrics");
    stack.weaviate.faults().clear();
    // Writes after the snapshot.
    writer.write(&stack, 40).await;
    wait_caught_up(&stack).await;
    assert_index_equals_table(&stack).await;
    second.stop().await;

    // Every row that ever existed is what one complete snapshot could have read.
    let rows = initial_rows + writer.inserted;
    let read = first_run_bound as f64 + second_run_rows;
    println!(
        "rows read: at most {first_run_bound} before the kill ({} chunks confirmed), {second_run_rows} after; {rows} rows ever existed",
        progress.next_seq
    );
    // The check must be able to tell a restart from a resume: a restart rereads what the first
    // run had confirmed.
    let confirmed_rows = progress.rows_done as f64;
    assert!(
        confirmed_rows > 0.1 * rows as f64 + (MAX_CHUNKS_AHEAD as u64 * CHUNK) as f64,
        "the kill came too early to tell a restart from a resume"
    );
    assert!(
        read < 1.1 * rows as f64,
        "read {read} rows for {rows} rows: the resumed snapshot started over"
    );
    // Exact: the second run reads only keys after the last confirmed one, and the confirmed
    // chunks' rows are distinct rows that ever existed.
    assert!(
        second_run_rows <= rows as f64 - confirmed_rows,
        "the second run read {second_run_rows} rows: it did not continue after the confirmed chunks"
    );
}

/// Every object's `lastUpdateTimeUnix`, by id.
fn update_times(stack: &Stack, skus: &[String]) -> BTreeMap<String, Value> {
    skus.iter()
        .map(|sku| {
            let obj = stack.object(sku).expect("indexed");
            (sku.clone(), obj["lastUpdateTimeUnix"].clone())
        })
        .collect()
}

/// Requests that write objects: a batch with objects, a batch delete, any object endpoint.
fn object_writes(requests: &[weaviate_test_server::RecordedRequest]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| {
            let batch_objects = r.method == "POST"
                && r.path == "/v1/batch/objects"
                && r.body
                    .as_ref()
                    .and_then(|b| b["objects"].as_array())
                    .is_some_and(|o| !o.is_empty());
            let batch_delete = r.method == "DELETE" && r.path == "/v1/batch/objects";
            let object =
                r.method != "GET" && r.method != "HEAD" && r.path.starts_with("/v1/objects");
            batch_objects || batch_delete || object
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_snapshot_of_an_unchanged_table_embeds_and_writes_nothing() {
    let stack = Stack::start().await;
    insert_rows(&stack, 3, 202).await;
    // Rows 25 apart get text; make half of all rows carry one.
    stack
        .db
        .exec("UPDATE catalog.products SET description = CONCAT('Sturdy product ', id % 7, ' for every day.') WHERE id % 2 = 0 AND description IS NULL")
        .await;
    let chunk = ["--snapshot-chunk-rows", "16"];

    let first = Vecsync::spawn(args_without_cache(&stack, &chunk));
    // The first snapshot and its sweep are over, and every row is in the index: the second
    // run has nothing to do.
    wait_snapshot_done(&stack, 4.0).await;
    wait_caught_up(&stack).await;
    stack.wait_in_sync().await;
    let computed = scrape(stack.metrics_port, EMBEDDINGS_COMPUTED_TOTAL)
        .await
        .expect("metrics");
    assert!(computed > 0.0, "the first snapshot embedded the texts");
    first.stop().await;

    let skus: Vec<String> = stack.table().await.into_keys().collect();
    let times = update_times(&stack, &skus);
    let seen = stack.weaviate.requests().len();

    let mut args = chunk.to_vec();
    args.extend(["--snapshot", "always"]);
    let second = Vecsync::spawn(args_without_cache(&stack, &args));
    wait_snapshot_done(&stack, 4.0).await;
    let rows = scrape(stack.metrics_port, SNAPSHOT_ROWS_TOTAL)
        .await
        .expect("metrics");
    let computed = scrape(stack.metrics_port, EMBEDDINGS_COMPUTED_TOTAL)
        .await
        .expect("metrics");
    let hits = scrape(stack.metrics_port, CACHE_HITS_TOTAL)
        .await
        .expect("metrics");
    second.stop().await;

    assert_eq!(rows, skus.len() as f64, "the second run read every row");
    assert_eq!(computed, 0.0, "the re-snapshot ran the model");
    assert_eq!(hits, 0.0, "no cache to hit");
    let writes = object_writes(&stack.weaviate.requests()[seen..]);
    assert!(
        writes.is_empty(),
        "the re-snapshot wrote objects: {writes:?}"
    );
    assert_eq!(update_times(&stack, &skus), times, "no object was updated");
    assert_index_equals_table(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_into_an_index_of_another_table_state_ends_equal_to_the_table() {
    let stack = Stack::start().await;
    insert_rows(&stack, 3, 302).await;
    // What an older state of the table left in the index, written directly.
    let sink = WeaviateSink::new(WeaviateConfig::new(stack.weaviate.url())).expect("sink");
    sink.ensure_schema().await.expect("schema");
    let wrong = "A description the row never had.";
    // Row 100's text (see insert_rows).
    let right = TEXTS[100 % TEXTS.len()];
    let vectors = embed_all([wrong.to_owned(), right.to_owned()].into()).await;
    let product = |sku: &str, name: &str, description: Option<&str>, price: &str| Product {
        sku: sku.into(),
        name: Some(name.into()),
        description: description.map(Into::into),
        price: decimal_to_json_number(price).ok(),
        ..Product::default()
    };
    let mut ops = Vec::new();
    // Objects whose rows never existed, with and without a vector.
    for i in 0..120 {
        let (description, vector) = if i % 2 == 0 {
            (Some(wrong), Some(vectors[wrong].clone()))
        } else {
            (None, None)
        };
        ops.push(WriteOp::Upsert {
            product: product(&format!("GONE-{i}"), "Gone", description, "1.00"),
            vector,
        });
    }
    // Stale properties: wrong name and price, the right text and vector.
    ops.push(WriteOp::Upsert {
        product: product("S-100", "Old name", Some(right), "999.99"),
        vector: Some(vectors[right].clone()),
    });
    // A text and vector the row no longer has (its description is NULL now).
    ops.push(WriteOp::Upsert {
        product: product("S-7", "Product 7", Some(wrong), "7.07"),
        vector: Some(vectors[wrong].clone()),
    });
    // The wrong text with its vector, for a row that has another text.
    ops.push(WriteOp::Upsert {
        product: product("S-75", "Product 75", Some(wrong), "75.75"),
        vector: Some(vectors[wrong].clone()),
    });
    // The right text and no vector.
    ops.push(WriteOp::Upsert {
        product: product("S-50", "Product 50", Some(TEXTS[50 % TEXTS.len()]), "50.50"),
        vector: None,
    });
    // An empty description with a vector.
    ops.push(WriteOp::Upsert {
        product: product("S-26", "Product 26", Some(wrong), "26.26"),
        vector: Some(vectors[wrong].clone()),
    });
    sink.apply(&ops).await.expect("write the old state");
    // An object vecsync's id rule did not make (no sku): not a product of this table.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/objects", stack.weaviate.url()))
        .json(&json!({
            "class": "Product",
            "id": uuid::Uuid::new_v4(),
            "properties": {"name": "written by someone else"}
        }))
        .send()
        .await
        .expect("post an object");
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(stack.weaviate.object_count("Product"), 126);

    let running = Vecsync::spawn(stack.args(&["--snapshot-chunk-rows", "32"]));
    wait_snapshot_done(&stack, 4.0).await;
    assert_index_equals_table(&stack).await;
    assert!(stack.object("GONE-0").is_none());
    running.stop().await;
}
