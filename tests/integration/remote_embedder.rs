//! `--embedder URL` end to end against a real inference server: infinity-emb serving the same
//! all-MiniLM-L6-v2 directory over the OpenAI API (harness::infinity), with real MariaDB,
//! memcached and the Weaviate test server.
//!
//! Starting infinity costs about 35 s of CPU on a busy 2-core machine, so each test covers
//! several behaviours with one server: the vectors, the CLI, a wrong model name, the rate-limit
//! path, refused texts and embedders that do not fit the index in one (faults come from an HTTP
//! proxy in front of the real server); the server killed and restarted mid-stream in the other.

use std::time::Duration;

use serde_json::Value;
use vecsync::position::GtidPosition;

use crate::harness::http_faults::{FaultProxy, HttpFault};
use crate::harness::infinity::{Infinity, SERVED_MODEL};
use crate::harness::stack::{Stack, assert_same_vector, golden_descriptions, metric};
use crate::harness::{DEFAULT_DEADLINE, wait_until};

/// A restarted infinity needs its start-up time plus the pipeline's next hold retry (<= 30 s).
const RECOVERY_DEADLINE: Duration = Duration::from_secs(180);

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn vector(obj: &Value) -> Vec<f32> {
    obj["vector"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(Value::as_f64)
                .map(|x| x as f32)
                .collect()
        })
        .unwrap_or_default()
}

fn checkpoint(stack: &Stack) -> Option<GtidPosition> {
    vecsync::checkpoint::read(&stack.checkpoint_path())
        .expect("readable checkpoint")
        .map(|c| c.gtid)
}

async fn wait_checkpoint_covers(stack: &Stack, position: &str, deadline: Duration) {
    let want: GtidPosition = position.parse().expect("gtid");
    wait_until("the checkpoint to cover the last write", deadline, || {
        let ok = checkpoint(stack).is_some_and(|c| c.covers(&want));
        async move { ok.then_some(()) }
    })
    .await;
}

/// `/readyz`'s status and body.
async fn readyz(stack: &Stack) -> Option<(u16, String)> {
    let r = reqwest::get(format!("http://127.0.0.1:{}/readyz", stack.metrics_port))
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

async fn insert(stack: &Stack, sku: &str, description: &str) -> String {
    stack
        .db
        .exec(&format!(
            "INSERT INTO catalog.products (sku, name, description, price) VALUES ('{sku}', 'n', {}, 1.00)",
            sql_str(description)
        ))
        .await;
    stack.db.gtid_binlog_pos().await
}

/// Wait until `sku` holds the reference vector of its text.
async fn wait_golden(stack: &Stack, sku: &str, want: &[f32], deadline: Duration) {
    let obj = wait_until(&format!("{sku} with a vector"), deadline, || {
        let obj = stack.object(sku).filter(|o| !vector(o).is_empty());
        async move { obj }
    })
    .await;
    assert_same_vector(&vector(&obj), want);
}

fn vecsync_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vecsync"))
        .args(args)
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run the vecsync binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_infinity_the_vectors_equal_the_golden_ones() {
    let infinity = Infinity::start().await;
    let url = infinity.url();
    let stack = Stack::start().await;
    let golden = golden_descriptions();

    // A model name the server does not serve is refused at start, with the names it serves.
    // (infinity itself would answer such a request with its one model.)
    let refused = stack.run_in_process(&["--embedder", &url, "--embedder-model", "no-such-model"]);
    let error = tokio::time::timeout(DEFAULT_DEADLINE, refused.task)
        .await
        .expect("refused within the deadline")
        .expect("no panic")
        .expect_err("a wrong model name stops vecsync");
    let message = error.to_string();
    assert!(
        message.contains("does not serve model `no-such-model`")
            && message.contains("--embedder-model")
            && message.contains(SERVED_MODEL),
        "{message}"
    );
    assert!(
        stack.weaviate.object_count("Product") == 0,
        "nothing was written"
    );

    // Rows that exist before the start go through the snapshot, later ones through the stream.
    for (i, (text, _)) in golden.iter().enumerate().take(3) {
        insert(&stack, &format!("SNAP-{i}"), text).await;
    }
    let running = stack.run_in_process(&["--embedder", &url, "--embedder-batch", "2"]);
    for (i, (_, want)) in golden.iter().enumerate().take(3) {
        wait_golden(&stack, &format!("SNAP-{i}"), want, DEFAULT_DEADLINE).await;
    }
    let mut last = String::new();
    for (i, (text, _)) in golden.iter().enumerate().skip(3).take(5) {
        last = insert(&stack, &format!("LIVE-{i}"), text).await;
    }
    for (i, (_, want)) in golden.iter().enumerate().skip(3).take(5) {
        wait_golden(&stack, &format!("LIVE-{i}"), want, DEFAULT_DEADLINE).await;
    }
    stack.wait_in_sync().await;
    wait_checkpoint_covers(&stack, &last, DEFAULT_DEADLINE).await;
    assert!(metric("vecsync_embedder_requests_total", "") >= 2.0);
    running.stop().await;

    // The CLI embeds through the same flags, and names the remote identity.
    let (text, want) = &golden[0];
    let out = vecsync_cli(&["embed", "--embedder", &url, text]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["text"], Value::String(text.clone()));
    assert_same_vector(&vector(&line), want);
    let remote_info = vecsync_cli(&["embed", "--info", "--embedder", &url]);
    assert!(remote_info.status.success());
    let remote_info: Value = serde_json::from_slice(&remote_info.stdout).expect("JSON");
    assert_eq!(remote_info["model"]["kind"], "remote");
    assert_eq!(remote_info["model"]["model"], SERVED_MODEL);
    assert_eq!(remote_info["dimension"], 384);
    assert_eq!(remote_info["normalized"], true);
    assert_eq!(remote_info["short"].as_str().map(str::len), Some(8));
    let model = crate::harness::stack::model_dir().display().to_string();
    let local_info = vecsync_cli(&["embed", "--info", "--model", &model]);
    let local_info: Value = serde_json::from_slice(&local_info.stdout).expect("JSON");
    assert_eq!(
        local_info["model"]["files"]["model.safetensors"],
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "the pinned weights"
    );
    assert_ne!(local_info["fingerprint"], remote_info["fingerprint"]);

    // Rate limits: 429 with Retry-After is waited out, first inside the client, then by the
    // pipeline holding its position (and saying so on /readyz), and nothing is lost.
    let proxy = FaultProxy::start(&infinity.origin()).await;
    let running = stack.run_in_process(&["--embedder", &proxy.url("/v1")]);
    wait_until(
        "/readyz 200 through the proxy",
        DEFAULT_DEADLINE,
        || async { readyz(&stack).await.filter(|(s, _)| *s == 200).map(|_| ()) },
    )
    .await;
    let retry_after = 2;
    // Three refusals exhaust the client's attempts, so the pipeline's hold loop sees one too.
    proxy.inject(HttpFault::too_many_requests("/embeddings", retry_after), 3);
    let (text, want) = &golden[10];
    let during = insert(&stack, "LIMITED-1", text).await;
    let reason = wait_until(
        "/readyz to report the rate limit",
        DEFAULT_DEADLINE,
        || async {
            readyz(&stack)
                .await
                .filter(|(s, body)| *s == 503 && body.contains("429"))
                .map(|(_, body)| body)
        },
    )
    .await;
    assert!(reason.contains("embedder unavailable"), "{reason}");
    assert!(
        !checkpoint(&stack).is_some_and(|c| c.covers(&during.parse().expect("gtid"))),
        "the checkpoint moved past an unembedded row"
    );
    wait_golden(&stack, "LIMITED-1", want, DEFAULT_DEADLINE).await;
    wait_checkpoint_covers(&stack, &during, DEFAULT_DEADLINE).await;
    assert_eq!(proxy.pending(), 0);
    let embeddings: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/embeddings"))
        .collect();
    let limited: Vec<usize> = (0..embeddings.len())
        .filter(|&i| embeddings[i].status == 429)
        .collect();
    assert_eq!(limited.len(), 3, "{embeddings:?}");
    for i in limited {
        let next = embeddings.get(i + 1).expect("a request after each 429");
        let gap = next.at.duration_since(embeddings[i].at);
        assert!(
            gap >= Duration::from_secs(retry_after),
            "retried {gap:?} after a 429 with Retry-After: {retry_after}"
        );
    }
    wait_until("/readyz to recover", DEFAULT_DEADLINE, || async {
        readyz(&stack).await.filter(|(s, _)| *s == 200).map(|_| ())
    })
    .await;

    // A 400 for a batch: its texts are sent one by one; the one still refused while the probe
    // text passes is dead-lettered, the other is written, and the checkpoint moves on.
    let refusal = HttpFault {
        path_suffix: "/embeddings".into(),
        status: 400,
        retry_after: None,
        body: r#"{"error":{"message":"input too long"}}"#.into(),
    };
    proxy.inject(refusal.clone(), 2); // the batch, then its first text alone
    let (good_text, good_vector) = &golden[12];
    stack
        .db
        .exec(&format!(
            "INSERT INTO catalog.products (sku, name, description, price) VALUES \
             ('BAD-1', 'n', 'a text the server refuses', 1.00), ('GOOD-1', 'n', {}, 1.00)",
            sql_str(good_text)
        ))
        .await;
    let after_refusal = stack.db.gtid_binlog_pos().await;
    wait_golden(&stack, "GOOD-1", good_vector, DEFAULT_DEADLINE).await;
    wait_checkpoint_covers(&stack, &after_refusal, DEFAULT_DEADLINE).await;
    assert!(stack.object("BAD-1").is_none());
    let dead = std::fs::read_to_string(stack.dead_letter_path()).expect("dead letters");
    let dead: Vec<&str> = dead.lines().collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].contains("BAD-1")
            && dead[0].contains("refused this text")
            && dead[0].contains("input too long"),
        "{}",
        dead[0]
    );

    // When the probe text is refused as well, the server changed: vecsync stops instead of
    // dead-lettering every text.
    proxy.inject(refusal, 2); // the batch's only text, then the probe text
    insert(&stack, "BAD-2", "another refused text").await;
    let stopped = tokio::time::timeout(DEFAULT_DEADLINE, running.task)
        .await
        .expect("stopped within the deadline")
        .expect("no panic")
        .expect_err("a server refusing every text stops vecsync");
    assert!(
        stopped
            .to_string()
            .contains("now refuses every text, the probe text included"),
        "{stopped}"
    );
    let dead = std::fs::read_to_string(stack.dead_letter_path()).expect("dead letters");
    assert_eq!(
        dead.lines().count(),
        1,
        "nothing more was dead-lettered: {dead}"
    );
    assert_eq!(proxy.pending(), 0);

    // An embedder that does not fit the index is refused at start: the probe's vectors have
    // another dimension than the stored ones, or are not unit length for a cosine class.
    let probe_answer = |vector: Vec<f32>| HttpFault {
        path_suffix: "/embeddings".into(),
        status: 200,
        retry_after: None,
        body: serde_json::json!({"data": [{"index": 0, "embedding": vector}]}).to_string(),
    };
    for (answer, expected) in [
        (
            vec![1.0, 0.0, 0.0],
            "objects already stored have 384-dimension vectors, vecsync writes 3",
        ),
        (vec![1.0; 384], "needs unit-length vectors"),
    ] {
        proxy.inject(probe_answer(answer), 1);
        let refused = stack.run_in_process(&["--embedder", &proxy.url("/v1")]);
        let error = tokio::time::timeout(DEFAULT_DEADLINE, refused.task)
            .await
            .expect("refused within the deadline")
            .expect("no panic")
            .expect_err("an embedder that does not fit stops vecsync");
        assert!(error.to_string().contains(expected), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinity_killed_and_restarted_mid_stream_loses_nothing() {
    let mut infinity = Infinity::start().await;
    let stack = Stack::start().await;
    let golden = golden_descriptions();
    let running = stack.run_in_process(&["--embedder", &infinity.url()]);
    stack
        .wait_object("the seed rows", "TS-001", |o| o.is_some())
        .await;
    let before = stack.db.gtid_binlog_pos().await;
    wait_checkpoint_covers(&stack, &before, DEFAULT_DEADLINE).await;

    infinity.stop();
    insert(&stack, "DOWN-1", &golden[4].0).await;
    let during = insert(&stack, "DOWN-2", &golden[5].0).await;
    let reason = wait_until(
        "/readyz to report the embedder outage",
        DEFAULT_DEADLINE,
        || async {
            readyz(&stack)
                .await
                .filter(|(s, _)| *s == 503)
                .map(|(_, body)| body)
        },
    )
    .await;
    assert!(
        reason.contains("embedder unavailable") && reason.contains("cannot reach the embedder"),
        "{reason}"
    );
    assert!(
        !checkpoint(&stack).is_some_and(|c| c.covers(&during.parse().expect("gtid"))),
        "the checkpoint moved past rows that have no vector yet"
    );
    assert!(stack.object("DOWN-1").is_none() && stack.object("DOWN-2").is_none());

    infinity.restart().await;
    wait_golden(&stack, "DOWN-1", &golden[4].1, RECOVERY_DEADLINE).await;
    wait_golden(&stack, "DOWN-2", &golden[5].1, RECOVERY_DEADLINE).await;
    wait_checkpoint_covers(&stack, &during, RECOVERY_DEADLINE).await;
    wait_until("/readyz to recover", DEFAULT_DEADLINE, || async {
        readyz(&stack).await.filter(|(s, _)| *s == 200).map(|_| ())
    })
    .await;
    stack.wait_in_sync().await;
    running.stop().await;
}
