//! Coalescing a batch of changes into the state each product must end in.
//!
//! Within a batch, the changes of one product are folded in order into its final state: three
//! updates in a row become one write (and at most one embedding), a delete after an insert is
//! just a delete, a sku change deletes the old object and writes the new one. What the final
//! state costs (nothing, a write with the stored vector, an embedding) is decided afterwards by
//! [`super::reconcile`] against what Weaviate holds; nothing here looks at the index.
//!
//! A batch holds live changes first and then snapshot rows (see [`super::collect`]): a snapshot
//! row is always the newest state of its product in the batch, because any later live change
//! of that product supersedes it before the batch is formed.

use std::collections::HashMap;

use crate::event::{ChangeEvent, Op, Row};
use crate::sink::Product;

use super::collect::Change;
use super::text::TextRule;

/// The state one product must end in.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// The object must hold `product`, with the vector of `text` (no vector when `text` is empty).
    Write { product: Product, text: String },
    /// The object must not exist.
    Delete { sku: String },
}

/// One product's intent, and the change that decided it (for dead letters).
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub sku: String,
    pub intent: Intent,
    /// Index of the deciding change in the batch.
    pub change: usize,
}

/// A change that carries no usable product (a NULL sku, a missing image): a dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct Unplannable {
    pub change: usize,
    pub reason: String,
}

/// The intents of a batch.
#[derive(Debug, Default, PartialEq)]
pub struct Coalesced {
    /// One entry per product touched, in order of first appearance.
    pub intents: Vec<Planned>,
    pub unplannable: Vec<Unplannable>,
}

enum Last {
    Row(Row),
    Deleted,
}

/// Coalesce `changes` (no truncate among them: a truncate ends its batch and is handled apart).
pub fn coalesce(changes: &[Change], text: &TextRule) -> Coalesced {
    let mut order: Vec<String> = Vec::new();
    let mut last: HashMap<String, (Last, usize)> = HashMap::new();
    let mut unplannable = Vec::new();
    let mut touch = |sku: String, state: Last, change: usize| {
        if !last.contains_key(&sku) {
            order.push(sku.clone());
        }
        last.insert(sku, (state, change));
    };

    for (i, change) in changes.iter().enumerate() {
        let ev = match change {
            Change::Stale { sku } => {
                touch(sku.clone(), Last::Deleted, i);
                continue;
            }
            Change::Event(ev) => ev,
        };
        let mut refuse = |reason: String| unplannable.push(Unplannable { change: i, reason });
        match ev.op {
            Op::Create | Op::Read => match ev.after.as_ref().map(sku_of) {
                Some(Ok(sku)) => touch(sku, Last::Row(ev.after.clone().unwrap_or_default()), i),
                Some(Err(reason)) => refuse(reason),
                None => refuse("insert event without an after image".into()),
            },
            Op::Delete => match ev.before.as_ref().map(sku_of) {
                Some(Ok(sku)) => touch(sku, Last::Deleted, i),
                Some(Err(reason)) => refuse(reason),
                None => refuse("delete event without a before image".into()),
            },
            Op::Update => {
                let (Some(before), Some(after)) = (ev.before.as_ref(), ev.after.as_ref()) else {
                    refuse("update event without both before and after images".into());
                    continue;
                };
                let new_sku = match sku_of(after) {
                    Ok(s) => s,
                    Err(reason) => {
                        refuse(reason);
                        continue;
                    }
                };
                // A sku change moves the product to another object id: the old one goes.
                if let Ok(old_sku) = sku_of(before)
                    && old_sku != new_sku
                {
                    touch(old_sku, Last::Deleted, i);
                }
                touch(new_sku, Last::Row(after.clone()), i);
            }
            Op::Truncate => refuse(
                "truncate inside a batch (the pipeline ends batches at truncates): a bug".into(),
            ),
        }
    }

    let intents = order
        .into_iter()
        .filter_map(|sku| {
            let (state, change) = last.remove(&sku)?;
            let intent = match state {
                Last::Deleted => Intent::Delete { sku: sku.clone() },
                Last::Row(row) => Intent::Write {
                    text: text.render(&row),
                    product: text.product_of(sku.clone(), &row),
                },
            };
            Some(Planned {
                sku,
                intent,
                change,
            })
        })
        .collect();
    Coalesced {
        intents,
        unplannable,
    }
}

/// The sku of a row image; products are identified by it.
pub(crate) fn sku_of(row: &Row) -> Result<String, String> {
    match row.get("sku") {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
        Some(serde_json::Value::Null) => {
            Err("the row's sku is NULL; a product needs a sku for its object id".into())
        }
        Some(other) => Err(format!("the row's sku is not text but {other}")),
        None => Err("the row has no sku column".into()),
    }
}

/// The skus a change touches (for superseding snapshot rows): before and after.
pub(crate) fn skus_touched(event: &ChangeEvent) -> impl Iterator<Item = String> + '_ {
    [event.before.as_ref(), event.after.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|row| sku_of(row).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;
    use serde_json::json;

    fn row(sku: &str, desc: Option<&str>, price: &str) -> Row {
        let v = json!({"id": 1, "sku": sku, "name": format!("name of {sku}"), "description": desc, "price": price});
        match v {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn ev(op: Op, before: Option<Row>, after: Option<Row>) -> Change {
        Change::Event(ChangeEvent {
            before,
            after,
            source: Source {
                connector: "vecsync".into(),
                db: "catalog".into(),
                table: "products".into(),
                server_id: 1,
                gtid: None,
                file: String::new(),
                pos: 0,
                row: 0,
                ts_ms: 0,
                snapshot: "false".into(),
            },
            op,
            ts_ms: 0,
        })
    }

    fn insert(sku: &str, desc: Option<&str>) -> Change {
        ev(Op::Create, None, Some(row(sku, desc, "1.00")))
    }

    fn update(sku: &str, from: Option<&str>, to: Option<&str>, price: &str) -> Change {
        ev(
            Op::Update,
            Some(row(sku, from, "1.00")),
            Some(row(sku, to, price)),
        )
    }

    fn plan(changes: &[Change]) -> Coalesced {
        coalesce(changes, &TextRule::default())
    }

    #[test]
    fn the_seeds_three_update_storm_is_one_write() {
        let changes = [
            update("TS-001", Some("old"), Some("new description 1"), "1.00"),
            update(
                "TS-001",
                Some("new description 1"),
                Some("new description 2"),
                "1.00",
            ),
            update(
                "TS-001",
                Some("new description 2"),
                Some("new description 3"),
                "1.00",
            ),
        ];
        let c = plan(&changes);
        assert_eq!(c.intents.len(), 1);
        match &c.intents[0] {
            Planned {
                intent: Intent::Write { product, text },
                change: 2,
                ..
            } => {
                assert_eq!(text, "new description 3");
                assert_eq!(product.description.as_deref(), Some("new description 3"));
            }
            other => panic!("expected the last write, got {other:?}"),
        }
    }

    #[test]
    fn null_or_empty_descriptions_have_no_text() {
        let c = plan(&[insert("A", None), insert("B", Some(""))]);
        for p in &c.intents {
            assert!(matches!(&p.intent, Intent::Write { text, .. } if text.is_empty()));
        }
    }

    #[test]
    fn delete_wins_over_earlier_writes_and_insert_after_delete_wins_over_it() {
        let del = ev(Op::Delete, Some(row("A", Some("x"), "1")), None);
        let c = plan(&[insert("A", Some("x")), del.clone()]);
        assert!(
            matches!(&c.intents[..], [Planned { intent: Intent::Delete { sku }, change: 1, .. }] if sku == "A")
        );
        let c = plan(&[del, insert("A", Some("y"))]);
        assert!(
            matches!(&c.intents[..], [Planned { intent: Intent::Write { text, .. }, change: 1, .. }] if text == "y")
        );
    }

    #[test]
    fn a_sku_change_deletes_the_old_object_and_writes_the_new_one() {
        let e = ev(
            Op::Update,
            Some(row("OLD", Some("d"), "1")),
            Some(row("NEW", Some("d"), "1")),
        );
        let c = plan(&[e]);
        assert_eq!(c.intents.len(), 2);
        assert!(matches!(&c.intents[0].intent, Intent::Delete { sku } if sku == "OLD"));
        assert!(
            matches!(&c.intents[1].intent, Intent::Write { product, .. } if product.sku == "NEW")
        );
    }

    #[test]
    fn stale_objects_are_deletes_and_a_later_row_wins() {
        let c = plan(&[
            Change::Stale { sku: "GONE".into() },
            insert("BACK", Some("b")),
            Change::Stale { sku: "BACK".into() },
        ]);
        assert!(matches!(&c.intents[0].intent, Intent::Delete { sku } if sku == "GONE"));
        assert!(matches!(&c.intents[1].intent, Intent::Delete { sku } if sku == "BACK"));
    }

    #[test]
    fn products_are_planned_in_order_of_first_appearance() {
        let changes = [
            insert("B", Some("b")),
            insert("A", Some("a")),
            update("B", Some("b"), Some("b2"), "1"),
        ];
        let skus: Vec<_> = plan(&changes)
            .intents
            .iter()
            .map(|p| p.sku.clone())
            .collect();
        assert_eq!(skus, ["B", "A"]);
    }

    #[test]
    fn rows_without_a_sku_are_unplannable_not_dropped() {
        let mut r = row("x", Some("d"), "1");
        r.insert("sku".into(), serde_json::Value::Null);
        let c = plan(&[ev(Op::Create, None, Some(r)), insert("A", Some("a"))]);
        assert_eq!(c.intents.len(), 1);
        assert_eq!(c.unplannable.len(), 1);
        assert_eq!(c.unplannable[0].change, 0);
        assert!(c.unplannable[0].reason.contains("sku is NULL"));
    }
}
