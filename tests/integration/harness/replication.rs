//! Two private `mariadbd`s with GTID replication: a primary and a replica that writes what it
//! replicates to its own binlog (`log_slave_updates=ON`), `CHANGE MASTER TO ...
//! MASTER_USE_GTID=slave_pos`. Helpers kill the primary with SIGKILL and promote the replica, as
//! an operator (or a failover manager) would.

use std::time::Duration;

use super::mariadb::MariaDb;
use super::{DEFAULT_DEADLINE, wait_until};

/// A primary and its replica.
pub struct ReplicaSet {
    pub primary: MariaDb,
    pub replica: MariaDb,
}

/// The replication user the replica connects as.
const REPL_USER: &str = "repl";
const REPL_PASSWORD: &str = "repl-password";

impl ReplicaSet {
    /// Start both servers and make the replica replicate everything the primary writes from now
    /// on (both start empty).
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Like [`ReplicaSet::start`], with extra settings for the replica (e.g.
    /// `log_slave_updates=OFF`).
    pub async fn start_with(replica_overrides: &[&str]) -> Self {
        let replica_settings = [
            &["server-id=2", "log_slave_updates=ON"][..],
            replica_overrides,
        ]
        .concat();
        let (primary, replica) = tokio::join!(
            MariaDb::start_with(&["server-id=1"]),
            MariaDb::start_with(&replica_settings)
        );
        primary
            .exec(&format!(
                "CREATE USER '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASSWORD}';
                 GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%'"
            ))
            .await;
        let set = Self { primary, replica };
        set.replicate().await;
        set
    }

    /// (Re)start replication on the replica from where it is (`slave_pos`).
    pub async fn replicate(&self) {
        self.replica
            .exec(&format!(
                "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, \
                 MASTER_USER = '{REPL_USER}', MASTER_PASSWORD = '{REPL_PASSWORD}', \
                 MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1;
                 START SLAVE",
                self.primary.port()
            ))
            .await;
    }

    /// Stop the replica's replication (it falls behind from now on).
    pub async fn pause_replication(&self) {
        self.replica.exec("STOP SLAVE").await;
    }

    /// Wait until the replica has applied everything the primary has written.
    pub async fn wait_caught_up(&self) {
        wait_caught_up(&self.primary, &self.replica).await;
    }

    /// SIGKILL the primary: no clean shutdown, nothing flushed to the replica any more.
    pub fn kill_primary(&mut self) {
        self.primary.kill9();
    }

    /// Make the replica a primary: stop replicating and forget the old primary.
    pub async fn promote_replica(&self) {
        promote(&self.replica).await;
    }
}

/// Wait until `replica` has applied everything `primary` has written.
pub async fn wait_caught_up(primary: &MariaDb, replica: &MariaDb) {
    let target = primary.gtid_binlog_pos().await;
    wait_until(
        "the replica to catch up with the primary",
        DEFAULT_DEADLINE,
        || {
            let target = target.clone();
            async move {
                let pos = replica
                    .query_one("SELECT @@gtid_slave_pos")
                    .await
                    .unwrap_or_default();
                let have: vecsync::position::GtidPosition = pos.parse().ok()?;
                let want: vecsync::position::GtidPosition = target.parse().ok()?;
                have.covers(&want).then_some(())
            }
        },
    )
    .await;
}

/// Make `replica` a primary: stop replicating and forget the old primary.
pub async fn promote(replica: &MariaDb) {
    replica
        .exec("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF")
        .await;
    // The SQL thread is gone once STOP SLAVE returns; make sure nothing replicates.
    wait_until(
        "the replica to stop replicating",
        Duration::from_secs(10),
        || async move {
            let running = replica
                .query_one(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                     WHERE COMMAND = 'Slave_SQL'",
                )
                .await;
            (running.as_deref() == Some("0")).then_some(())
        },
    )
    .await;
}
