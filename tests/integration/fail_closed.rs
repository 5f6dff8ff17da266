//! Fail closed, end to end: a change is delivered, or held with the position not moving and the
//! reason on `/readyz`, or stopped with a definite error. Never dead-lettered for a problem that
//! is not the object's own content, never a stale vector.

use crate::harness::stack::{Stack, assert_same_vector, metric, model_dir, vector_of};
use crate::harness::{DEFAULT_DEADLINE, wait_until};
use vecsync::sink::product_id;

/// Wait until `/readyz` answers 503 with a reason containing `needle`.
async fn wait_not_ready_with(stack: &Stack, needle: &str) -> String {
    wait_until(
        &format!("/readyz 503 mentioning {needle:?}"),
        DEFAULT_DEADLINE,
        || async {
            match stack.readyz_body().await {
                Some((503, body)) if body.contains(needle) => Some(body),
                _ => None,
            }
        },
    )
    .await
}

async fn wait_ready(stack: &Stack) {
    wait_until("/readyz 200", DEFAULT_DEADLINE, || async {
        (stack.readyz().await == Some(200)).then_some(())
    })
    .await;
}

fn embed(text: &str) -> Vec<f32> {
    vecsync::embed::Embedder::load(&model_dir())
        .expect("model")
        .embed(&[text])
        .expect("embed")
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_per_object_error_holds_the_position_instead_of_dead_lettering() {
    let stack = Stack::start().await;
    let running = stack.run_in_process(&[]);
    stack
        .wait_object("the seed rows", "TS-001", |o| o.is_some())
        .await;
    let before = stack.db.gtid_binlog_pos().await;
    stack.wait_checkpoint_covers(&before).await;

    // A transient problem Weaviate words in a way no list knows, for long enough to outlast the
    // sink's own retries.
    let message = "raft: leadership lost while committing the write";
    stack
        .weaviate
        .faults()
        .fail_objects([product_id("HELD-1")], message, 12);
    stack
        .db
        .exec("INSERT INTO catalog.products (sku, name, description, price) VALUES ('HELD-1', 'Held', 'A held product.', 5.00)")
        .await;
    let after = stack.db.gtid_binlog_pos().await;

    let reason = wait_not_ready_with(&stack, "leadership lost").await;
    assert!(reason.contains("weaviate"), "{reason}");
    assert!(
        !stack
            .checkpoint()
            .expect("checkpoint")
            .covers(&after.parse().expect("gtid")),
        "the position is held while the write fails"
    );
    assert!(stack.dead_letters().is_empty(), "not a dead letter");
    assert_eq!(metric("vecsync_dead_letters_total", ""), 0.0);

    // The problem goes away by itself: the change is delivered, the position moves.
    let obj = stack
        .wait_object("the held product", "HELD-1", |o| o.is_some())
        .await
        .expect("object");
    assert_same_vector(&vector_of(&obj), &embed("A held product."));
    stack.wait_checkpoint_covers(&after).await;
    wait_ready(&stack).await;
    assert!(stack.dead_letters().is_empty());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_wide_rejection_holds_and_dead_letters_nothing() {
    let stack = Stack::start().await;
    let running = stack.run_in_process(&[]);
    stack
        .wait_object("the seed rows", "TS-001", |o| o.is_some())
        .await;
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;

    // Every object of the batch fails with the same message, one that on its own would be a
    // content error: the class, not each object, is the problem.
    let message =
        "new node has a vector with length 384. Existing nodes have vectors with length 768";
    let ids = ["CW-1", "CW-2", "CW-3"].map(product_id);
    stack.weaviate.faults().fail_objects(ids, message, 3);
    stack
        .db
        .exec("INSERT INTO catalog.products (sku, name, description, price) VALUES ('CW-1', 'a', 'one', 1), ('CW-2', 'b', 'two', 2), ('CW-3', 'c', 'three', 3)")
        .await;
    let after = stack.db.gtid_binlog_pos().await;
    let reason = wait_not_ready_with(&stack, "class or cluster problem").await;
    assert!(reason.contains("length 768"), "{reason}");
    assert!(
        stack.dead_letters().is_empty(),
        "no dead letter for a class problem"
    );

    for sku in ["CW-1", "CW-2", "CW-3"] {
        stack
            .wait_object("the held products", sku, |o| o.is_some())
            .await;
    }
    stack.wait_checkpoint_covers(&after).await;
    assert!(stack.dead_letters().is_empty());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_change_after_a_rejected_write_and_a_restart_never_keeps_a_stale_vector() {
    let stack = Stack::start().await;
    let running = stack.run_in_process(&[]);
    let old = stack
        .wait_object("the seed rows", "TS-001", |o| o.is_some())
        .await
        .expect("object");
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;

    // The new description's write is rejected for good (Weaviate's content wording): a dead
    // letter, and Weaviate keeps the old object with the old vector.
    let rejected =
        "invalid text property 'description' on class 'Product': not a string, but json.Number";
    stack
        .weaviate
        .faults()
        .fail_objects([product_id("TS-001")], rejected, 1);
    let new_description = "A heavyweight organic cotton t-shirt for cold mornings.";
    stack
        .db
        .exec(&format!(
            "UPDATE catalog.products SET description = '{new_description}' WHERE sku = 'TS-001'"
        ))
        .await;
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    assert_eq!(
        stack.dead_letters().len(),
        1,
        "the rejected write is a dead letter"
    );
    let kept = stack.object("TS-001").expect("object");
    assert_eq!(
        kept["properties"]["description"],
        old["properties"]["description"]
    );
    running.stop().await;

    // Restarted (nothing in memory survives), a price-only change of that product: its stored
    // vector belongs to the OLD description, so it must be embedded afresh, not kept.
    let running = stack.run_in_process(&[]);
    stack
        .db
        .exec("UPDATE catalog.products SET price = 21.00 WHERE sku = 'TS-001'")
        .await;
    let obj = stack
        .wait_object("the new price", "TS-001", |o| {
            o.is_some_and(|o| o["properties"]["price"] == serde_json::json!(21.0))
        })
        .await
        .expect("object");
    assert_eq!(obj["properties"]["description"], new_description);
    assert_same_vector(&vector_of(&obj), &embed(new_description));
    running.stop().await;
}

/// MariaDB going away is not "all is well": after the grace period `/readyz` says the source is
/// disconnected and why, and the lag gauge grows with the outage instead of reading 0 (the
/// channel is empty, which is exactly when the old gauge said "caught up"). Back up, the change
/// made meanwhile arrives and both recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_down_makes_vecsync_unready_and_the_lag_grow_until_it_is_back() {
    let mut stack = Stack::start().await;
    let running = stack.run_in_process(&[]);
    stack
        .wait_object("the seed rows", "TS-001", |o| o.is_some())
        .await;
    let before = stack.db.gtid_binlog_pos().await;
    stack.wait_checkpoint_covers(&before).await;
    wait_ready(&stack).await;
    assert_eq!(metric("vecsync_binlog_lag_seconds", ""), 0.0, "caught up");

    stack.db.kill9();
    let body = wait_not_ready_with(&stack, "MariaDB source disconnected").await;
    assert!(body.contains("source"), "{body}");
    let first = wait_until("the lag to show the outage", DEFAULT_DEADLINE, || async {
        let lag = metric("vecsync_binlog_lag_seconds", "");
        (lag >= 1.0).then_some(lag)
    })
    .await;
    wait_until("the lag to keep growing", DEFAULT_DEADLINE, || async {
        (metric("vecsync_binlog_lag_seconds", "") > first).then_some(())
    })
    .await;
    assert_eq!(metric("vecsync_ready", ""), 0.0);

    stack.db.restart().await;
    stack
        .db
        .exec("INSERT INTO catalog.products (sku, name, description, price) VALUES ('BACK-1', 'Back', 'Made after the outage.', 3.00)")
        .await;
    stack
        .wait_object("the row written after the outage", "BACK-1", |o| {
            o.is_some()
        })
        .await;
    wait_ready(&stack).await;
    wait_until("the lag to return to 0", DEFAULT_DEADLINE, || async {
        (metric("vecsync_binlog_lag_seconds", "") == 0.0).then_some(())
    })
    .await;
    running.stop().await;
}

/// Weaviate 1.32.0-1.38.9 and 1.39.0 report only the first object of a read-only shard as
/// FAILED and the rest as SUCCESS although none was written. vecsync takes any `read-only`
/// error as failing the whole batch: the position is held with the reason on `/readyz`, nothing
/// is dead-lettered, and once the store is writable every object of the batch is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_shard_reporting_one_failure_holds_the_whole_batch() {
    let stack = Stack::start().await;
    let running = stack.run_in_process(&[]);
    stack
        .wait_object("the seed rows", "TS-001", |o| o.is_some())
        .await;
    let before = stack.db.gtid_binlog_pos().await;
    stack.wait_checkpoint_covers(&before).await;

    stack
        .weaviate
        .faults()
        .read_only_with_reporting_bug("disk usage currently at 91.00%, threshold set to 90.00%");
    stack
        .db
        .exec(
            "INSERT INTO catalog.products (sku, name, description, price) VALUES
             ('RO-1', 'One', 'The first of three.', 1.00),
             ('RO-2', 'Two', 'The second of three.', 2.00),
             ('RO-3', 'Three', 'The third of three.', 3.00)",
        )
        .await;
    let after: vecsync::position::GtidPosition =
        stack.db.gtid_binlog_pos().await.parse().expect("position");
    let body = wait_not_ready_with(&stack, "read-only").await;
    assert!(body.contains("disk usage"), "{body}");
    let held = stack.checkpoint().expect("checkpoint");
    assert!(!held.covers(&after), "the position is held: {held}");
    assert!(stack.dead_letters().is_empty(), "not a dead letter");
    for sku in ["RO-1", "RO-2", "RO-3"] {
        assert!(stack.object(sku).is_none(), "{sku} was not written");
    }

    stack.weaviate.faults().writable();
    stack.wait_checkpoint_covers(&after.to_string()).await;
    for sku in ["RO-1", "RO-2", "RO-3"] {
        assert!(stack.object(sku).is_some(), "{sku} arrived once writable");
    }
    assert!(stack.dead_letters().is_empty());
    wait_ready(&stack).await;
    running.stop().await;
}
