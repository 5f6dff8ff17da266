//! `--embed-template` end to end: the vector is the embedding of the rendered text, every
//! column the template uses is stored, and only a change to such a column costs an embedding.

use crate::harness::stack::{Stack, assert_same_vector, metric, model_dir, vector_of};

fn embed(text: &str) -> Vec<f32> {
    vecsync::embed::Embedder::load(&model_dir())
        .expect("model")
        .embed(&[text])
        .expect("embed")
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_over_several_columns_embeds_the_rendered_text_and_only_re_embeds_when_it_changes()
 {
    let stack = Stack::start().await;
    stack
        .db
        .exec("ALTER TABLE catalog.products ADD COLUMN category VARCHAR(40) NULL, ADD COLUMN stock INT NOT NULL DEFAULT 0;
               UPDATE catalog.products SET category = 'Tops' WHERE sku = 'TS-001';")
        .await;
    let running = stack.run_in_process(&["--embed-template", "{name}. {description} [{category}]"]);
    let obj = stack
        .wait_object("the snapshot row", "TS-001", |o| o.is_some())
        .await
        .expect("object");
    assert_eq!(
        obj["properties"]["category"], "Tops",
        "the template's column is stored"
    );
    assert!(
        obj["properties"].get("stock").is_none(),
        "a column it does not use is not"
    );
    assert_same_vector(
        &vector_of(&obj),
        &embed("Cotton T-Shirt. A classic crew-neck t-shirt made from 100% premium cotton. [Tops]"),
    );
    // NULL category renders as empty.
    let jeans = stack.object("JN-001").expect("object");
    assert_same_vector(
        &vector_of(&jeans),
        &embed("Slim Fit Jeans. Modern slim fit jeans crafted from stretch denim for comfort. []"),
    );
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;

    // A column outside the template: no embedding.
    let before = metric("vecsync_embeddings_computed_total", "");
    stack
        .db
        .exec("UPDATE catalog.products SET stock = 7, price = 18.00 WHERE sku = 'TS-001'")
        .await;
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    assert_eq!(metric("vecsync_embeddings_computed_total", ""), before);
    let obj = stack.object("TS-001").expect("object");
    assert_eq!(obj["properties"]["price"], serde_json::json!(18.0));

    // A column of the template (the name): one embedding, of the new text.
    stack
        .db
        .exec("UPDATE catalog.products SET name = 'Organic Tee' WHERE sku = 'TS-001'")
        .await;
    stack
        .wait_checkpoint_covers(&stack.db.gtid_binlog_pos().await)
        .await;
    assert_eq!(
        metric("vecsync_embeddings_computed_total", ""),
        before + 1.0
    );
    let obj = stack.object("TS-001").expect("object");
    assert_same_vector(
        &vector_of(&obj),
        &embed("Organic Tee. A classic crew-neck t-shirt made from 100% premium cotton. [Tops]"),
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_column_missing_from_an_existing_class_is_refused_with_a_message() {
    let stack = Stack::start().await;
    // The seed's class, without a `category` property, holds the index already.
    let running = stack.run_in_process(&[]);
    stack
        .wait_object("the seed rows", "TS-001", |o| o.is_some())
        .await;
    running.stop().await;
    stack
        .db
        .exec("ALTER TABLE catalog.products ADD COLUMN category VARCHAR(40) NULL")
        .await;
    let config = stack.config(&["--embed-template", "{description} {category}"]);
    let err = vecsync::pipeline::run(config, tokio_util::sync::CancellationToken::new())
        .await
        .expect_err("refused");
    let shown = err.to_string();
    assert!(shown.contains("category"), "{shown}");
}
