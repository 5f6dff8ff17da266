//! `--repair`: write the fixes through the pipeline's own write path.
//!
//! Each drift is turned into a write by [`reconcile::decide`] (the stored vector is reused when
//! it belongs to the text, the model runs only for texts that need a vector, through the
//! embedding cache as in the pipeline), then one [`WeaviateSink::apply`] (the batch upsert and
//! the batch delete by id). An object the deep check found with a wrong vector is written with
//! the fresh embedding of its text. Objects that are not products of this table are deleted by
//! id. Per-object refusals (Weaviate's, or a text the embedder cannot embed) are reported.

use uuid::Uuid;

use crate::pipeline::reconcile::{self, Decision};
use crate::pipeline::text::TextRule;
use crate::pipeline::vectors::{Need, Vectors};
use crate::sink::{OpOutcome, WeaviateSink, WriteOp};

use super::VerifyError;
use super::check::Drift;
use super::report::{Rejected, RepairReport};

/// Write the fixes for `drift`.
pub async fn repair(
    drift: &[Drift],
    sink: &WeaviateSink,
    vectors: &Vectors,
    rule: &TextRule,
    out: &mut RepairReport,
) -> Result<(), VerifyError> {
    let dimension = vectors.dimension();
    let mut ops: Vec<WriteOp> = Vec::new();
    let mut foreign: Vec<Uuid> = Vec::new();
    let mut embed: Vec<&Drift> = Vec::new();
    for d in drift {
        if d.foreign {
            foreign.push(d.id);
            continue;
        }
        let Some(expected) = &d.expected else {
            ops.push(WriteOp::Delete { sku: d.sku.clone() });
            continue;
        };
        if let Some(fresh) = &d.fresh {
            ops.push(WriteOp::Upsert {
                product: expected.product.clone(),
                vector: Some(fresh.to_vec()),
            });
            continue;
        }
        match reconcile::decide(
            &expected.product,
            &expected.text,
            d.held.as_ref(),
            rule,
            dimension,
        ) {
            Decision::Skip => {}
            Decision::WriteWithoutVector => ops.push(WriteOp::Upsert {
                product: expected.product.clone(),
                vector: None,
            }),
            Decision::WriteWithVector(v) => ops.push(WriteOp::Upsert {
                product: expected.product.clone(),
                vector: Some(v.to_vec()),
            }),
            Decision::Embed => embed.push(d),
        }
    }
    if !embed.is_empty() {
        let needs: Vec<Need<'_>> = embed
            .iter()
            .filter_map(|d| {
                d.expected.as_ref().map(|e| Need {
                    sku: &e.product.sku,
                    text: &e.text,
                })
            })
            .collect();
        let vectors = vectors.get(&needs).await?;
        for (d, v) in embed.iter().zip(vectors) {
            let Some(expected) = &d.expected else {
                continue;
            };
            match v {
                Ok(v) => {
                    out.embedded += 1;
                    ops.push(WriteOp::Upsert {
                        product: expected.product.clone(),
                        vector: Some(v.to_vec()),
                    });
                }
                Err(message) => out.rejected.push(Rejected {
                    sku: d.sku.clone(),
                    message: format!("cannot be embedded: {message}"),
                }),
            }
        }
    }
    let outcomes = sink.apply(&ops).await?;
    for (op, outcome) in ops.iter().zip(outcomes) {
        match (op, outcome) {
            (_, OpOutcome::Rejected { message }) => out.rejected.push(Rejected {
                sku: op.sku().to_owned(),
                message,
            }),
            (WriteOp::Delete { .. }, _) => out.deleted += 1,
            (_, OpOutcome::Done) => out.written += 1,
            (_, OpOutcome::Missing) => out.rejected.push(Rejected {
                sku: op.sku().to_owned(),
                message: "the object vanished during the repair".into(),
            }),
        }
    }
    if !foreign.is_empty() {
        sink.delete_ids(&foreign).await?;
        out.deleted += foreign.len() as u64;
    }
    Ok(())
}
