//! Test helper for snapshots: applies a source's messages to an in-memory table with the
//! documented semantics (events in order; a chunk's rows written when the chunk arrives; an
//! absence deletes; any later event supersedes) and checks at every step that the merge was
//! exact, so a test can compare the model with the final table row by row.
//!
//! The checks, which only hold when every chunk sits exactly at its read position:
//! - a chunk row the model already has (from stream events before the chunk) is identical to
//!   it: the chunk is the table at its position, and the events before it led there;
//! - every row the model has in a chunk's key range is in the chunk (its delete, if any, would
//!   have come before the chunk);
//! - an update or delete of a row the model has carries exactly that row as its before image;
//! - an insert never hits a row the model has.

#![allow(dead_code)] // each test uses part of it

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vecsync::event::{ChangeEvent, Op, Row, SnapshotMessage, SourceMessage};
use vecsync::position::GtidPosition;

/// The test table: `id INT PRIMARY KEY, sku VARCHAR(40) UNIQUE, price DECIMAL(10,2), version INT`.
pub fn create_products(db: &str, rows: u32) -> String {
    let values: Vec<String> = (1..=rows)
        .map(|i| format!("({i}, 's{i}', {i}.25, 0)"))
        .collect();
    let mut sql = format!(
        "CREATE DATABASE IF NOT EXISTS {db};
         CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(40) NOT NULL UNIQUE,
             price DECIMAL(10,2), version INT NOT NULL);"
    );
    for batch in values.chunks(1000) {
        sql.push_str(&format!(
            "INSERT INTO {db}.products VALUES {};",
            batch.join(",")
        ));
    }
    sql
}

/// The final table as the JSON rows the source would produce, by id.
pub async fn products_table(conn: &mut mysql_async::Conn, db: &str) -> BTreeMap<i64, Value> {
    let rows: Vec<(i64, String, Option<String>, i64)> = conn
        .query(format!(
            "SELECT id, sku, CAST(price AS CHAR), version FROM {db}.products ORDER BY id"
        ))
        .await
        .expect("final table");
    rows.into_iter()
        .map(|(id, sku, price, version)| {
            (
                id,
                json!({"id": id, "sku": sku, "price": price, "version": version}),
            )
        })
        .collect()
}

/// Counters a test reads to know the merge did what it is meant to.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Snapshot ids in the order their `Started` arrived, with `resumed`.
    pub started: Vec<(String, bool)>,
    /// (seq, rows, position) of every chunk.
    pub chunks: Vec<(u64, usize, GtidPosition)>,
    pub rows_read: u64,
    /// Stream events while a snapshot was between its first and last chunk.
    pub events_during_snapshot: u64,
    /// Of those, events on rows the snapshot had already copied / not yet copied.
    pub on_copied: u64,
    pub on_not_copied: u64,
    pub absences: Vec<(u64, Vec<String>)>,
    pub last_commit: Option<GtidPosition>,
    pub snapshot_done: bool,
}

/// The in-memory table. `K` must order like the table's key does in MariaDB.
pub struct Model<K: Ord + Clone + Debug> {
    pub rows: BTreeMap<K, Value>,
    key: fn(&Value) -> K,
    /// Columns compared (all when `None`): lets a test ignore a column added mid-snapshot.
    columns: Option<Vec<String>>,
    /// The last key the running snapshot copied.
    after: Option<K>,
    /// Every key any chunk had (a key read twice counts once).
    pub read_keys: std::collections::BTreeSet<K>,
    in_snapshot: bool,
    pub seen: Seen,
}

impl<K: Ord + Clone + Debug> Model<K> {
    pub fn new(key: fn(&Value) -> K) -> Self {
        Self {
            rows: BTreeMap::new(),
            key,
            columns: None,
            after: None,
            read_keys: std::collections::BTreeSet::new(),
            in_snapshot: false,
            seen: Seen::default(),
        }
    }

    /// Compare and keep only these columns.
    pub fn only_columns(mut self, columns: &[&str]) -> Self {
        self.columns = Some(columns.iter().map(|c| (*c).to_owned()).collect());
        self
    }

    fn image(&self, row: &Option<Row>, what: &str) -> Value {
        let row = row
            .as_ref()
            .unwrap_or_else(|| panic!("{what} image missing"));
        let mut v = serde_json::to_value(row).expect("json");
        if let (Some(cols), Some(map)) = (&self.columns, v.as_object_mut()) {
            map.retain(|k, _| cols.contains(k));
        }
        v
    }

    /// Apply one message, checking it against the state it applies to.
    pub fn apply(&mut self, message: &SourceMessage) {
        match message {
            SourceMessage::Event(e) => self.event(e),
            SourceMessage::Commit(c) => self.seen.last_commit = Some(c.position.clone()),
            SourceMessage::Snapshot(SnapshotMessage::Started(s)) => {
                self.seen.started.push((s.id.clone(), s.resumed));
                self.in_snapshot = true;
                self.seen.snapshot_done = false;
                if !s.resumed {
                    self.after = None;
                }
            }
            SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) => {
                let rows: Vec<Value> = c
                    .rows
                    .iter()
                    .map(|e| {
                        assert_eq!(e.op, Op::Read);
                        self.image(&e.after, "chunk row")
                    })
                    .collect();
                let keys: Vec<K> = rows.iter().map(|r| (self.key)(r)).collect();
                assert!(
                    keys.windows(2).all(|w| w[0] < w[1]),
                    "chunk {} rows are in key order",
                    c.seq
                );
                if let (Some(after), Some(first)) = (&self.after, keys.first()) {
                    assert!(
                        after < first,
                        "chunk {} starts after the last copied key",
                        c.seq
                    );
                }
                // Every row the model has in this chunk's range must be in the chunk.
                let lo = self.after.clone();
                let hi = if c.last { None } else { keys.last().cloned() };
                for k in self.rows.keys() {
                    let above = lo.as_ref().is_none_or(|lo| k > lo);
                    let below = hi.as_ref().is_none_or(|hi| k <= hi);
                    if above && below {
                        assert!(
                            keys.contains(k),
                            "row {k:?} exists before chunk {} (at {}) but is not in it: a delete \
                             merged after the chunk, or a row read at the wrong position",
                            c.seq,
                            c.position
                        );
                    }
                }
                for (k, row) in keys.iter().zip(rows) {
                    if let Some(have) = self.rows.get(k) {
                        assert_eq!(
                            have, &row,
                            "chunk {} (at {}) row {k:?} differs from the state the stream led to",
                            c.seq, c.position
                        );
                    }
                    self.rows.insert(k.clone(), row);
                    self.read_keys.insert(k.clone());
                }
                if let Some(last) = keys.last() {
                    self.after = Some(last.clone());
                }
                self.seen
                    .chunks
                    .push((c.seq, c.rows.len(), c.position.clone()));
                self.seen.rows_read += c.rows.len() as u64;
                if c.last {
                    self.in_snapshot = false;
                    self.seen.snapshot_done = true;
                }
            }
            SourceMessage::Snapshot(SnapshotMessage::Absent(a)) => {
                for value in &a.absent {
                    self.rows.retain(|_, row| {
                        let v = &row[a.column.as_str()];
                        let text = v
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string());
                        &text != value
                    });
                }
                self.seen.absences.push((a.request, a.absent.clone()));
            }
        }
    }

    fn event(&mut self, e: &ChangeEvent) {
        assert_eq!(e.source.snapshot, "false");
        if self.in_snapshot && !self.seen.chunks.is_empty() {
            self.seen.events_during_snapshot += 1;
            let image = e.before.as_ref().or(e.after.as_ref());
            if let Some(row) = image {
                let k = (self.key)(&serde_json::to_value(row).expect("json"));
                if self.after.as_ref().is_some_and(|a| &k <= a) {
                    self.seen.on_copied += 1;
                } else {
                    self.seen.on_not_copied += 1;
                }
            }
        }
        match e.op {
            Op::Create => {
                let row = self.image(&e.after, "after");
                let k = (self.key)(&row);
                assert!(
                    !self.rows.contains_key(&k),
                    "insert of row {k:?} the model already has: a chunk read after the insert \
                     was merged before it"
                );
                self.rows.insert(k, row);
            }
            Op::Update => {
                let (before, after) = (
                    self.image(&e.before, "before"),
                    self.image(&e.after, "after"),
                );
                let kb = (self.key)(&before);
                if let Some(have) = self.rows.remove(&kb) {
                    assert_eq!(
                        have, before,
                        "update of row {kb:?} from a state the model never had"
                    );
                }
                let ka = (self.key)(&after);
                assert!(
                    !self.rows.contains_key(&ka),
                    "update onto an existing row {ka:?}"
                );
                self.rows.insert(ka, after);
            }
            Op::Delete => {
                let before = self.image(&e.before, "before");
                let k = (self.key)(&before);
                if let Some(have) = self.rows.remove(&k) {
                    assert_eq!(
                        have, before,
                        "delete of row {k:?} from a state the model never had"
                    );
                }
            }
            Op::Truncate => self.rows.clear(),
            Op::Read => panic!("`r` events come only inside chunks"),
        }
    }
}

/// The key of the test table's rows.
pub fn id_key(row: &Value) -> i64 {
    row["id"].as_i64().expect("id")
}

/// The seed of a randomised test: `VECSYNC_TEST_SEED` or a random one, printed.
pub fn seed(test: &str) -> u64 {
    let seed: u64 = std::env::var("VECSYNC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{test} seed: {seed} (replay with VECSYNC_TEST_SEED={seed})");
    seed
}

/// Random writes to the products table until `stop` (and at least 30): single-row inserts,
/// updates (price, version, sku), deletes, and small multi-row transactions. `domains` > 1
/// spreads them over that many replication domains. `done` counts statements.
pub async fn write_randomly(
    url: String,
    db: String,
    max_id: i64,
    seed: u64,
    domains: u32,
    stop: CancellationToken,
    done: Arc<AtomicU64>,
) -> u64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut conns = Vec::new();
    for domain in 0..domains.max(1) {
        let mut conn = mysql_async::Conn::from_url(url.clone())
            .await
            .expect("writer connects");
        if domains > 1 {
            conn.query_drop(format!("SET SESSION gtid_domain_id = {domain}"))
                .await
                .expect("set the writer's domain");
        }
        conns.push(conn);
    }
    let mut next_id = max_id + 100_000;
    let mut ops = 0u64;
    while !stop.is_cancelled() || ops < 30 {
        let id = rng.random_range(1..=max_id);
        let sql = match rng.random_range(0..12) {
            0..=3 => format!(
                "UPDATE {db}.products SET price = price + 1, version = version + 1 WHERE id = {id}"
            ),
            4 => format!(
                "UPDATE {db}.products SET sku = CONCAT('x', id, '-', version + 1), version = version + 1 WHERE id = {id}"
            ),
            5 | 6 => {
                next_id += 1;
                format!("INSERT INTO {db}.products VALUES ({next_id}, 'n{next_id}', 1.00, 0)")
            }
            7 => {
                // Reuse an id the table may no longer have (deleted earlier).
                format!("INSERT IGNORE INTO {db}.products VALUES ({id}, 'r{id}-{ops}', 3.00, 0)")
            }
            8 | 9 => format!("DELETE FROM {db}.products WHERE id = {id}"),
            _ => {
                next_id += 1;
                format!(
                    "BEGIN; UPDATE {db}.products SET version = version + 1 WHERE id = {id};
                     INSERT INTO {db}.products VALUES ({next_id}, 't{next_id}', 2.50, 0);
                     DELETE FROM {db}.products WHERE id = {};
                     COMMIT",
                    rng.random_range(1..=max_id)
                )
            }
        };
        let pick = rng.random_range(0..conns.len());
        let conn = &mut conns[pick];
        conn.query_drop(sql).await.expect("writer statement");
        ops += 1;
        done.store(ops, Ordering::SeqCst);
    }
    for conn in conns {
        conn.disconnect().await.expect("disconnect");
    }
    ops
}
