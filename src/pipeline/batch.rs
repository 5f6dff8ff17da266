//! Turning a batch of change events into the Weaviate writes that bring each product to its
//! final state.
//!
//! Within a batch, the events of one product are coalesced in order: three updates in a row cost
//! one write, and at most one embedding. An update whose description ends the batch as it started
//! is written without a vector, so Weaviate keeps the stored one (no re-embedding for a price
//! change). A sku change deletes the old object and writes the new one.
//!
//! Truncates are not planned here: the pipeline splits batches at them, because a truncate orders
//! against every product at once.

use std::collections::{HashMap, HashSet};

use crate::event::{ChangeEvent, Op, Row};
use crate::sink::Product;

/// What one product must become in Weaviate.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    /// Write the whole object. `embed` is the text to embed for its vector; `None` writes the
    /// object without a vector (NULL or empty description).
    Upsert {
        product: Product,
        embed: Option<String>,
        /// Index of the event that decided this state, for dead letters.
        event: usize,
    },
    /// Update the properties and keep the stored vector: the description did not change.
    Patch { product: Product, event: usize },
    /// Remove the object of this sku.
    Delete { sku: String, event: usize },
}

impl Planned {
    pub fn sku(&self) -> &str {
        match self {
            Planned::Upsert { product, .. } | Planned::Patch { product, .. } => &product.sku,
            Planned::Delete { sku, .. } => sku,
        }
    }

    /// The full write (with a vector for its description) that replaces a patch whose object
    /// turned out to be missing.
    pub fn into_full_write(self) -> Planned {
        match self {
            Planned::Patch { product, event } => {
                let embed = product.description.clone().filter(|d| !d.is_empty());
                Planned::Upsert {
                    product,
                    embed,
                    event,
                }
            }
            other => other,
        }
    }

    pub fn event(&self) -> usize {
        match self {
            Planned::Upsert { event, .. }
            | Planned::Patch { event, .. }
            | Planned::Delete { event, .. } => *event,
        }
    }
}

/// An event that cannot become a Weaviate write, whatever Weaviate says.
#[derive(Debug, Clone, PartialEq)]
pub struct Unplannable {
    pub event: usize,
    pub reason: String,
}

/// The writes for a batch.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// One entry per product touched, in order of first appearance.
    pub ops: Vec<Planned>,
    /// Events that carry no usable product (e.g. a NULL sku): dead letters.
    pub unplannable: Vec<Unplannable>,
    /// Updates whose description did not change, so no embedding was needed for them.
    pub reembeds_skipped: u64,
}

/// The state a product is in after the events seen so far in the batch.
struct Pending {
    /// Description in Weaviate before this batch, when known (`Some(None)` = known NULL).
    /// `None` when the first event of the batch did not tell (insert, snapshot read).
    description_before: Option<Option<String>>,
    last: Last,
    event: usize,
}

enum Last {
    Row(Row),
    Deleted,
}

/// Plan the writes for `events`, none of which may be a truncate.
///
/// `must_embed` lists skus whose stored object is known to be stale (an earlier write of theirs
/// was rejected), so they never keep their stored vector.
pub fn plan(events: &[ChangeEvent], must_embed: &HashSet<String>) -> Plan {
    let mut order: Vec<String> = Vec::new();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut unplannable = Vec::new();

    let mut touch =
        |sku: String, description_before: Option<Option<String>>, last: Last, event: usize| {
            match pending.get_mut(&sku) {
                Some(p) => {
                    p.last = last;
                    p.event = event;
                }
                None => {
                    order.push(sku.clone());
                    pending.insert(
                        sku,
                        Pending {
                            description_before,
                            last,
                            event,
                        },
                    );
                }
            }
        };

    for (i, ev) in events.iter().enumerate() {
        match ev.op {
            Op::Create | Op::Read => match ev.after.as_ref().map(sku_of) {
                Some(Ok(sku)) => touch(sku, None, Last::Row(row(ev.after.as_ref())), i),
                Some(Err(reason)) => unplannable.push(Unplannable { event: i, reason }),
                None => unplannable.push(Unplannable {
                    event: i,
                    reason: "insert event without an after image".into(),
                }),
            },
            Op::Delete => match ev.before.as_ref().map(sku_of) {
                Some(Ok(sku)) => {
                    let before = Some(description_of(ev.before.as_ref()));
                    touch(sku, before, Last::Deleted, i);
                }
                Some(Err(reason)) => unplannable.push(Unplannable { event: i, reason }),
                None => unplannable.push(Unplannable {
                    event: i,
                    reason: "delete event without a before image".into(),
                }),
            },
            Op::Update => {
                let (Some(before), Some(after)) = (ev.before.as_ref(), ev.after.as_ref()) else {
                    unplannable.push(Unplannable {
                        event: i,
                        reason: "update event without both before and after images".into(),
                    });
                    continue;
                };
                let new_sku = match sku_of(after) {
                    Ok(s) => s,
                    Err(reason) => {
                        unplannable.push(Unplannable { event: i, reason });
                        continue;
                    }
                };
                let description_before = Some(description_of(Some(before)));
                // A sku change moves the product to another object id: the old one goes.
                if let Ok(old_sku) = sku_of(before)
                    && old_sku != new_sku
                {
                    touch(old_sku, description_before.clone(), Last::Deleted, i);
                    // The new object may not exist yet: it needs its own vector.
                    touch(new_sku, None, Last::Row(after.clone()), i);
                } else {
                    touch(new_sku, description_before, Last::Row(after.clone()), i);
                }
            }
            Op::Truncate => unplannable.push(Unplannable {
                event: i,
                reason:
                    "truncate inside a planned batch (the pipeline splits batches at truncates)"
                        .into(),
            }),
        }
    }

    let mut plan = Plan {
        unplannable,
        ..Plan::default()
    };
    for sku in order {
        let Some(p) = pending.remove(&sku) else {
            continue;
        };
        let op = match p.last {
            Last::Deleted => Planned::Delete {
                sku,
                event: p.event,
            },
            Last::Row(row) => {
                let product = product_of(sku, &row);
                let description = product.description.clone();
                let unchanged = p.description_before.as_ref() == Some(&description);
                if unchanged && !must_embed.contains(&product.sku) {
                    plan.reembeds_skipped += 1;
                    Planned::Patch {
                        product,
                        event: p.event,
                    }
                } else {
                    let embed = description.filter(|d| !d.is_empty());
                    Planned::Upsert {
                        product,
                        embed,
                        event: p.event,
                    }
                }
            }
        };
        plan.ops.push(op);
    }
    plan
}

fn row(r: Option<&Row>) -> Row {
    r.cloned().unwrap_or_default()
}

/// The sku of a row image; products are identified by it.
fn sku_of(row: &Row) -> Result<String, String> {
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

fn description_of(row: Option<&Row>) -> Option<String> {
    match row?.get("description")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn text_of(row: &Row, column: &str) -> Option<String> {
    match row.get(column)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The Weaviate properties of a product row: sku, name, description as text, price as a number.
pub fn product_of(sku: String, row: &Row) -> Product {
    Product {
        sku,
        name: text_of(row, "name"),
        description: description_of(Some(row)),
        price: row.get("price").and_then(price_of),
        extra: Default::default(),
    }
}

/// DECIMAL arrives as an exact string ("19.99"); Weaviate's `number` takes a JSON number.
fn price_of(v: &serde_json::Value) -> Option<serde_json::Number> {
    match v {
        serde_json::Value::Number(n) => Some(n.clone()),
        serde_json::Value::String(s) => crate::sink::decimal_to_json_number(s).ok(),
        _ => None,
    }
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

    fn ev(op: Op, before: Option<Row>, after: Option<Row>) -> ChangeEvent {
        ChangeEvent {
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
        }
    }

    fn insert(sku: &str, desc: Option<&str>) -> ChangeEvent {
        ev(Op::Create, None, Some(row(sku, desc, "1.00")))
    }

    fn update(sku: &str, from: Option<&str>, to: Option<&str>, price: &str) -> ChangeEvent {
        ev(
            Op::Update,
            Some(row(sku, from, "1.00")),
            Some(row(sku, to, price)),
        )
    }

    fn none() -> HashSet<String> {
        HashSet::new()
    }

    #[test]
    fn the_seeds_three_update_storm_is_one_write_and_one_embedding() {
        let events = [
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
        let plan = plan(&events, &none());
        assert_eq!(plan.ops.len(), 1);
        match &plan.ops[0] {
            Planned::Upsert {
                product,
                embed,
                event,
            } => {
                assert_eq!(embed.as_deref(), Some("new description 3"));
                assert_eq!(product.description.as_deref(), Some("new description 3"));
                assert_eq!(*event, 2);
            }
            other => panic!("expected an upsert, got {other:?}"),
        }
    }

    #[test]
    fn price_only_updates_keep_the_vector() {
        let events = [
            update("A", Some("same"), Some("same"), "2.50"),
            update("A", Some("same"), Some("same"), "3.75"),
        ];
        let plan = plan(&events, &none());
        assert_eq!(plan.reembeds_skipped, 1);
        match &plan.ops[..] {
            [Planned::Patch { product, .. }] => {
                assert_eq!(product.price, serde_json::Number::from_f64(3.75));
                assert_eq!(product.description.as_deref(), Some("same"));
            }
            other => panic!("expected one patch, got {other:?}"),
        }
        // Unless the stored object is known to be stale.
        let stale: HashSet<String> = ["A".to_string()].into();
        assert!(matches!(
            plan_of(&events, &stale)[..],
            [Planned::Upsert { embed: Some(_), .. }]
        ));
    }

    fn plan_of(events: &[ChangeEvent], must: &HashSet<String>) -> Vec<Planned> {
        plan(events, must).ops
    }

    #[test]
    fn a_description_changed_and_changed_back_keeps_the_vector() {
        let events = [
            update("A", Some("one"), Some("two"), "1.00"),
            update("A", Some("two"), Some("one"), "1.00"),
        ];
        assert!(matches!(
            plan_of(&events, &none())[..],
            [Planned::Patch { .. }]
        ));
    }

    #[test]
    fn inserts_and_snapshot_reads_always_embed() {
        let events = [
            insert("A", Some("text a")),
            ev(Op::Read, None, Some(row("B", Some("text b"), "1"))),
        ];
        let ops = plan_of(&events, &none());
        assert!(
            matches!(&ops[..], [Planned::Upsert { embed: Some(a), .. }, Planned::Upsert { embed: Some(b), .. }] if a == "text a" && b == "text b")
        );
    }

    #[test]
    fn null_or_empty_descriptions_write_no_vector() {
        let events = [insert("A", None), insert("B", Some(""))];
        let ops = plan_of(&events, &none());
        assert!(matches!(
            &ops[..],
            [
                Planned::Upsert { embed: None, .. },
                Planned::Upsert { embed: None, .. }
            ]
        ));
        // And a NULL description that stays NULL is a patch.
        let ops = plan_of(&[update("C", None, None, "5")], &none());
        assert!(matches!(&ops[..], [Planned::Patch { .. }]));
    }

    #[test]
    fn delete_wins_over_earlier_writes_and_insert_after_delete_wins_over_it() {
        let del = ev(Op::Delete, Some(row("A", Some("x"), "1")), None);
        let ops = plan_of(&[insert("A", Some("x")), del.clone()], &none());
        assert!(matches!(&ops[..], [Planned::Delete { sku, event: 1 }] if sku == "A"));

        let ops = plan_of(&[del, insert("A", Some("y"))], &none());
        assert!(matches!(&ops[..], [Planned::Upsert { embed: Some(t), event: 1, .. }] if t == "y"));
    }

    #[test]
    fn a_sku_change_deletes_the_old_object_and_writes_the_new_one() {
        let e = ev(
            Op::Update,
            Some(row("OLD", Some("d"), "1")),
            Some(row("NEW", Some("d"), "1")),
        );
        let ops = plan_of(&[e], &none());
        assert_eq!(ops.len(), 2);
        assert!(matches!(&ops[0], Planned::Delete { sku, .. } if sku == "OLD"));
        // Same description, but the NEW object may not exist: it is embedded, not patched.
        assert!(
            matches!(&ops[1], Planned::Upsert { product, embed: Some(_), .. } if product.sku == "NEW")
        );
    }

    #[test]
    fn products_are_planned_in_order_of_first_appearance() {
        let events = [
            insert("B", Some("b")),
            insert("A", Some("a")),
            update("B", Some("b"), Some("b2"), "1"),
        ];
        let skus: Vec<_> = plan_of(&events, &none())
            .iter()
            .map(|p| p.sku().to_owned())
            .collect();
        assert_eq!(skus, ["B", "A"]);
    }

    #[test]
    fn rows_without_a_sku_are_unplannable_not_dropped() {
        let mut r = row("x", Some("d"), "1");
        r.insert("sku".into(), serde_json::Value::Null);
        let plan = plan(
            &[ev(Op::Create, None, Some(r)), insert("A", Some("a"))],
            &none(),
        );
        assert_eq!(plan.ops.len(), 1);
        assert_eq!(plan.unplannable.len(), 1);
        assert_eq!(plan.unplannable[0].event, 0);
        assert!(plan.unplannable[0].reason.contains("sku is NULL"));
    }

    #[test]
    fn price_becomes_a_json_number_and_null_stays_null() {
        let mut r = row("A", Some("d"), "19.99");
        assert_eq!(
            product_of("A".into(), &r).price,
            serde_json::Number::from_f64(19.99)
        );
        assert_eq!(
            serde_json::to_string(&product_of("A".into(), &r).price)
                .ok()
                .as_deref(),
            Some("19.99")
        );
        r.insert("price".into(), serde_json::Value::Null);
        assert_eq!(product_of("A".into(), &r).price, None);
    }
}
