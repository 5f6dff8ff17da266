//! Following a MariaDB failover by GTID. Two real servers replicate (primary -> replica with
//! `log_slave_updates=ON`); vecsync knows both (`--mariadb-url` twice). Random writes in two
//! replication domains, `kill -9` of the primary, promotion of the replica, more writes: vecsync
//! continues on the new primary from its GTID checkpoint, across a restart too, and the index
//! equals the new primary's table row by row. When the new primary does not have vecsync's
//! position (it never received transactions vecsync saw), that is a definite error saying so, or
//! with `--snapshot when-needed` a re-read of the new primary's table. A replica is a source of
//! its own, and one without `log_slave_updates` is refused.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vecsync::config::{SnapshotMode, TableRef};
use vecsync::event::Op;
use vecsync::position::GtidPosition;
use vecsync::source::{SourceConfig, SourceError};

use crate::harness::mariadb::MariaDb;
use crate::harness::replication::{self, ReplicaSet};
use crate::harness::source::Running;
use crate::harness::stack::Stack;
use crate::harness::{DEFAULT_DEADLINE, unique_name, wait_until};

fn seed(test: &str) -> u64 {
    let seed: u64 = std::env::var("VECSYNC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{test}: seed {seed} (replay with VECSYNC_TEST_SEED={seed})");
    seed
}

/// `count` random single-statement transactions on catalog.products of `db`, each in
/// replication domain 0 or 1: inserts of new skus, updates of descriptions and prices, deletes.
async fn random_writes(db: &MariaDb, rng: &mut StdRng, count: usize, next: &mut u32) {
    for _ in 0..count {
        let domain = rng.random_range(0..2);
        let choice = if *next == 0 {
            0
        } else {
            rng.random_range(0..10)
        };
        let sql = match choice {
            0..=3 => {
                *next += 1;
                format!(
                    "INSERT INTO catalog.products (sku, name, description, price) VALUES \
                     ('FO-{n}', 'Product {n}', 'A sturdy thing number {n} in colour {c}', {p}.50)",
                    n = *next,
                    c = rng.random_range(0..1000),
                    p = rng.random_range(1..200)
                )
            }
            4..=6 => format!(
                "UPDATE catalog.products SET description = 'Now in shade {}', price = {}.25 \
                 WHERE sku = 'FO-{}'",
                rng.random_range(0..1000),
                rng.random_range(1..200),
                rng.random_range(1..=*next)
            ),
            7 => format!(
                "UPDATE catalog.products SET price = {}.75 WHERE sku = 'FO-{}'",
                rng.random_range(1..200),
                rng.random_range(1..=*next)
            ),
            _ => format!(
                "DELETE FROM catalog.products WHERE sku = 'FO-{}'",
                rng.random_range(1..=*next)
            ),
        };
        db.exec(&format!("SET SESSION gtid_domain_id = {domain}; {sql}"))
            .await;
    }
}

fn read_checkpoint(stack: &Stack) -> Option<GtidPosition> {
    vecsync::checkpoint::read(&stack.checkpoint_path())
        .ok()
        .flatten()
        .map(|c| c.gtid)
}

async fn wait_checkpoint_covers(stack: &Stack, db: &MariaDb) {
    let end: GtidPosition = db.gtid_binlog_pos().await.parse().expect("position");
    wait_until(
        "the checkpoint to reach the end of the binlog",
        DEFAULT_DEADLINE,
        || {
            let ok = read_checkpoint(stack).is_some_and(|c| c.covers(&end));
            async move { ok.then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continues_on_the_promoted_replica_with_nothing_lost() {
    crate::harness::source::init_tracing();
    let mut rng = StdRng::seed_from_u64(seed("continues_on_the_promoted_replica"));
    let ReplicaSet { primary, replica } = ReplicaSet::start().await;
    let mut stack = Stack::on(primary).await;
    // The primary first, the replica second: `--mariadb-url` repeated.
    let replica_url = replica.url();
    let urls = ["--mariadb-url", replica_url.as_str()];
    let vecsync = stack.run_in_process(&urls);
    let mut next = 0;
    random_writes(&stack.db, &mut rng, 40, &mut next).await;
    stack.wait_in_sync().await;

    // Everything reached the replica; the primary dies and the replica takes over.
    replication::wait_caught_up(&stack.db, &replica).await;
    stack.db.kill9();
    replication::promote(&replica).await;
    random_writes(&replica, &mut rng, 40, &mut next).await;
    stack.wait_in_sync_with(&replica).await;
    wait_checkpoint_covers(&stack, &replica).await;
    let at = read_checkpoint(&stack).expect("checkpoint");
    assert!(
        at.get(0).is_some() && at.get(1).is_some(),
        "both replication domains tracked: {at}"
    );
    assert!(
        at.iter().any(|g| g.server_id == 2),
        "the checkpoint went on with the new primary's transactions: {at}"
    );
    vecsync.stop().await;

    // A restart after the failover resumes from the checkpoint, the dead primary still listed
    // first.
    random_writes(&replica, &mut rng, 20, &mut next).await;
    let vecsync = stack.run_in_process(&urls);
    stack.wait_in_sync_with(&replica).await;
    wait_checkpoint_covers(&stack, &replica).await;
    vecsync.stop().await;
}

/// A source on `urls` for catalog.products, with a short heartbeat.
fn source_config(urls: &[String], snapshot: SnapshotMode) -> SourceConfig {
    let mut cfg = SourceConfig::new(
        urls[0].clone(),
        TableRef {
            db: "catalog".into(),
            table: "products".into(),
        },
    );
    cfg.failover_urls = urls[1..].to_vec();
    cfg.snapshot = snapshot;
    cfg.heartbeat = std::time::Duration::from_secs(1);
    cfg
}

/// Replication set with the catalog, a source streaming from the primary (replica listed
/// second) that has seen transactions the replica never got; then the primary is killed, the
/// replica promoted and written to until it has moved past vecsync's position.
async fn diverged(snapshot: SnapshotMode) -> (ReplicaSet, Running) {
    let set = ReplicaSet::start().await;
    set.primary.exec(crate::harness::stack::CATALOG_SQL).await;
    set.wait_caught_up().await;
    let start: GtidPosition = set.primary.gtid_binlog_pos().await.parse().expect("pos");
    let urls = [set.primary.url(), set.replica.url()];
    let mut source = Running::start(source_config(&urls, snapshot), Some(start));
    set.pause_replication().await;
    // Three transactions only the primary (and vecsync) will ever have.
    for n in 1..=3 {
        set.primary
            .exec(&format!(
                "INSERT INTO catalog.products (sku, name, description) VALUES ('LOST-{n}', 'lost', 'gone')"
            ))
            .await;
    }
    let mut seen = 0;
    while seen < 3 {
        let (events, _) = source.transaction().await;
        seen += events.len();
    }
    let mut set = set;
    set.kill_primary();
    set.promote_replica().await;
    // The new primary writes more than it missed: its binlog has moved past the position.
    for n in 1..=5 {
        set.replica
            .exec(&format!(
                "INSERT INTO catalog.products (sku, name, description) VALUES ('NEW-{n}', 'new', 'here')"
            ))
            .await;
    }
    (set, source)
}

#[tokio::test]
async fn a_new_primary_without_the_position_is_a_definite_error_that_says_so() {
    let (_set, source) = diverged(SnapshotMode::Initial).await;
    let err = source.error().await;
    assert!(matches!(err, SourceError::Diverged { .. }), "{err:?}");
    assert!(!err.is_transient());
    let msg = err.to_string();
    assert!(
        msg.contains("diverged") && msg.contains("--snapshot when-needed"),
        "{msg}"
    );
}

#[tokio::test]
async fn with_when_needed_a_diverged_new_primary_is_read_again() {
    let (set, mut source) = diverged(SnapshotMode::WhenNeeded).await;
    set.replica
        .exec("INSERT INTO catalog.products (sku, name) VALUES ('AFTER', 'after')")
        .await;
    // A snapshot of the new primary's table, then streaming from it (the source may notice the
    // divergence while the test still writes: the last new rows then come streamed).
    let mut read = Vec::new();
    let mut streamed = Vec::new();
    while !read.iter().chain(&streamed).any(|s: &String| s == "AFTER") {
        let (events, _) = source.transaction().await;
        for e in events {
            let sku = e.after.as_ref().expect("after")["sku"]
                .as_str()
                .expect("sku")
                .to_owned();
            match e.op {
                Op::Read => read.push(sku),
                _ => streamed.push(sku),
            }
        }
    }
    assert!(read.contains(&"TS-001".to_owned()), "a snapshot: {read:?}");
    let mut all: Vec<String> = read.into_iter().chain(streamed).collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all,
        [
            "AFTER", "JN-001", "NEW-1", "NEW-2", "NEW-3", "NEW-4", "NEW-5", "TS-001"
        ],
        "the new primary's rows, none of the lost ones"
    );
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn streams_from_a_replica_with_log_slave_updates() {
    let set = ReplicaSet::start().await;
    let db = unique_name("replica");
    set.primary
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(20))"
        ))
        .await;
    set.wait_caught_up().await;
    let start: GtidPosition = set.replica.gtid_binlog_pos().await.parse().expect("pos");
    let mut cfg =
        crate::harness::source::config(&set.replica, &db, "products", SnapshotMode::Never);
    cfg.heartbeat = std::time::Duration::from_secs(1);
    let mut source = Running::start(cfg, Some(start));
    set.primary
        .exec(&format!(
            "INSERT INTO {db}.products VALUES (1, 'via-replica')"
        ))
        .await;
    let (events, commit) = source.transaction().await;
    assert_eq!(
        events[0].after.as_ref().expect("after")["sku"],
        "via-replica"
    );
    assert_eq!(events[0].source.server_id, 1, "written by the primary");
    assert_eq!(
        commit.position.to_string(),
        set.primary.gtid_binlog_pos().await,
        "the same GTIDs on both servers"
    );
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn a_replica_without_log_slave_updates_is_refused() {
    let set = ReplicaSet::start_with(&["log_slave_updates=OFF"]).await;
    let db = unique_name("replica");
    set.primary
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY)"
        ))
        .await;
    set.wait_caught_up().await;
    let cfg = crate::harness::source::config(&set.replica, &db, "products", SnapshotMode::Initial);
    let err = vecsync::source::BinlogSource::new(cfg)
        .expect("config")
        .preflight()
        .await
        .expect_err("a replica that does not log what it replicates");
    assert!(
        matches!(
            err,
            SourceError::Setting {
                setting: "log_slave_updates",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("log_slave_updates=ON"), "{err}");
    // The primary is fine as a source.
    let cfg = crate::harness::source::config(&set.primary, &db, "products", SnapshotMode::Initial);
    vecsync::source::BinlogSource::new(cfg)
        .expect("config")
        .preflight()
        .await
        .expect("the primary passes");
}
