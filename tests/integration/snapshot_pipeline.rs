//! The source's chunked snapshot driven by the real pipeline (collect backlog, diff, sweep):
//! rows deleted while vecsync was stopped leave the index after `--snapshot always`, and after a
//! purged binlog with `--snapshot when-needed`. (The pipeline's own end-to-end snapshot tests
//! are elsewhere; these check that the two halves fit.)

use crate::harness::stack::Stack;

async fn sixty_products(stack: &Stack) {
    let values: Vec<String> = (1..=60)
        .map(|i| format!("('P-{i}', 'Product {i}', 'A sturdy product number {i}.', {i}.50)"))
        .collect();
    stack
        .db
        .exec(&format!(
            "INSERT INTO catalog.products (sku, name, description, price) VALUES {}",
            values.join(",")
        ))
        .await;
}

async fn changes_while_stopped(stack: &Stack) {
    stack
        .db
        .exec(
            "DELETE FROM catalog.products WHERE sku IN ('P-1','P-7','P-8','P-20','P-21','P-33','P-40','P-41','P-59','TS-001');
             UPDATE catalog.products SET price = 1.00 WHERE sku = 'P-2';
             UPDATE catalog.products SET description = 'Rewritten while stopped.' WHERE sku = 'P-3'",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_while_stopped_leave_the_index_with_snapshot_always() {
    let stack = Stack::start().await;
    sixty_products(&stack).await;
    let running = stack.run_in_process(&["--snapshot-chunk-rows", "7"]);
    stack.wait_in_sync().await;
    running.stop().await;

    changes_while_stopped(&stack).await;
    let running = stack.run_in_process(&["--snapshot", "always", "--snapshot-chunk-rows", "7"]);
    stack.wait_in_sync().await;
    assert!(stack.object("P-1").is_none());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_while_stopped_leave_the_index_after_a_purge_with_when_needed() {
    let stack = Stack::start().await;
    sixty_products(&stack).await;
    let running = stack.run_in_process(&["--snapshot-chunk-rows", "7"]);
    stack.wait_in_sync().await;
    running.stop().await;

    changes_while_stopped(&stack).await;
    stack.db.purge_binary_logs().await;
    let running =
        stack.run_in_process(&["--snapshot", "when-needed", "--snapshot-chunk-rows", "7"]);
    stack.wait_in_sync().await;
    running.stop().await;
}
