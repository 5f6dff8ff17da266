//! The source's errors, split into transient ones (reconnect and resume from the last commit) and
//! definite ones (stop, and tell the operator what to change).
//!
//! Every error that happens while replicating carries the table and the last fully handled GTID
//! position, so a log line alone says where replication stopped.
//!
//! # Causes, once
//! A driver error is kept (to classify it) but not exposed as the error's `source()`: its text is
//! part of the message, cleaned of `mysql_async`'s repetitions ([`mysql_cause`]), so a log line
//! (`%error`) and an error chain (`{:#}`) both print each cause exactly once.

/// An error of the binlog source. See [`SourceError::is_transient`].
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid MariaDB URL {url}: {reason}")]
    Url { url: String, reason: String },

    #[error(
        "MariaDB at {url} refused user {user:?}: {message}. Check the user name and password \
         (MARIADB_PASSWORD or --mariadb-password-file) and that the user may connect from this host"
    )]
    AccessDenied {
        url: String,
        user: String,
        message: String,
    },

    #[error(
        "TLS with MariaDB at {url} failed: {message}. Check --mariadb-ssl-ca (the CA that signed \
         the server's certificate) and the URL's verify_ca / verify_identity options"
    )]
    Tls { url: String, message: String },

    #[error("cannot reach MariaDB at {url}: {}", mysql_cause(.cause))]
    Connect {
        url: String,
        cause: Box<mysql_async::Error>,
    },

    #[error(
        "lost the MariaDB connection while {doing} (table {table}, position {position:?}): {}",
        mysql_cause(.cause)
    )]
    Connection {
        doing: &'static str,
        table: String,
        position: String,
        cause: Box<mysql_async::Error>,
    },

    #[error(
        "MariaDB sent no binlog event and no heartbeat for {seconds} s (table {table}, position \
         {position:?}); the connection is presumed dead"
    )]
    Silent {
        seconds: u64,
        table: String,
        position: String,
    },

    #[error("MariaDB setting {setting} is {value}: {why}. Fix: {fix}")]
    Setting {
        setting: &'static str,
        value: String,
        why: &'static str,
        fix: String,
    },

    #[error("MariaDB user {user} lacks the {privilege} privilege, which {why}. Fix: {fix}")]
    Privilege {
        user: String,
        privilege: &'static str,
        why: &'static str,
        fix: String,
    },

    #[error(
        "table {table} does not exist on the MariaDB server, or user {user} cannot see it; \
         check --table (db.table, case-sensitive) and GRANT SELECT ON {table} TO the user"
    )]
    NoTable { table: String, user: String },

    #[error(
        "the binlog the position {position:?} of {table} needs has been purged from the server \
         ({message}). To recover, re-snapshot the table: restart with --snapshot when-needed (or \
         always), or delete the checkpoint file so the next start takes a snapshot. To keep it \
         from happening again, keep binlogs longer (expire_logs_days / binlog_expire_logs_seconds)"
    )]
    Purged {
        table: String,
        position: String,
        message: String,
    },

    #[error(
        "MariaDB at {url} does not have vecsync's position {position:?} of {table} in its binlog \
         and has written other transactions since: it has diverged from the server vecsync read \
         before (after a failover, transactions vecsync saw on the old primary never reached the \
         new one). MariaDB says: {message}. The index may hold changes that no longer exist. To \
         reconcile it with this server's table, restart with --snapshot when-needed (which does so \
         by itself) or --snapshot always"
    )]
    Diverged {
        url: String,
        table: String,
        position: String,
        message: String,
    },

    #[error(
        "MariaDB at {url} does not have vecsync's position {position:?} of {table} yet ({message}); \
         it is behind the server vecsync read before (a lagging replica?)"
    )]
    Behind {
        url: String,
        table: String,
        position: String,
        message: String,
    },

    #[error(
        "no MariaDB server can stream {table} from position {position:?} now: {}",
        tried.join("; ")
    )]
    NoServer {
        table: String,
        position: String,
        /// One line per server tried: its URL and what went wrong.
        tried: Vec<String>,
    },

    #[error(
        "MariaDB cannot stream {table} from position {position:?}: {message}. Check that the \
         position (--gtid or the checkpoint) belongs to this server's binlog"
    )]
    BadPosition {
        table: String,
        position: String,
        message: String,
    },

    #[error("binlog event at {file}:{pos} (table {table}, position {position:?}): {reason}")]
    Event {
        table: String,
        position: String,
        file: String,
        pos: u64,
        reason: String,
    },

    #[error(
        "binlog event at {at} (table {table}, position {position:?}) has type {type_code}{}, \
         which vecsync does not know (it decodes the events of MariaDB {SUPPORTED_VERSIONS}; the \
         server is {server_version}). Skipping it could lose changes, so vecsync stops. Use a \
         vecsync that supports this server version",
        super::mariadb_events::unknown_type_name(*type_code)
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    )]
    UnknownEvent {
        table: String,
        position: String,
        /// `file:pos` of the event.
        at: String,
        type_code: u8,
        server_version: String,
    },

    #[error(
        "binlog event at {at} (table {table}, position {position:?}) is an INCIDENT \
         (number {number}: {message:?}): the server recorded that changes may be missing from its \
         binlog, so the index cannot be trusted past this point. Check the server's error log, \
         then re-snapshot the table (restart with --snapshot always); to stream on without \
         re-snapshotting, restart with --gtid set after this event"
    )]
    Incident {
        table: String,
        position: String,
        at: String,
        number: u16,
        message: String,
    },

    #[error(
        "table {table} was {} at {at} (position {position:?}); vecsync stops because there is \
         nothing left to replicate under that name. {}",
        how.what(),
        how.fix(table)
    )]
    TableGone {
        table: String,
        position: String,
        at: String,
        how: Gone,
    },

    #[error(
        "table {table} must be re-read ({reason}, position {position:?}) but --snapshot is never. \
         Restart with --snapshot when-needed (re-reads the table whenever the binlog cannot say \
         what changed) or --snapshot always"
    )]
    NeedsSnapshot {
        table: String,
        position: String,
        reason: String,
    },

    #[error(
        "the binlog stream of {table} failed {failures} times in a row at position {position:?} \
         ({file}) without completing a transaction in between: {cause}. vecsync stops rather than \
         retry forever; fix the cause and restart"
    )]
    Stuck {
        table: String,
        position: String,
        file: String,
        failures: u32,
        cause: String,
    },

    #[error(
        "prepared XA transactions on {table} hold {held_mb} MiB of changes while they wait for \
         XA COMMIT or XA ROLLBACK (at {at}), more than half of --max-buffer-mb {budget_mb} (the \
         most they may hold); raise --max-buffer-mb, or resolve the prepared transactions (XA \
         RECOVER lists them)"
    )]
    XaTooLarge {
        table: String,
        at: String,
        held_mb: usize,
        budget_mb: usize,
    },

    #[error("MariaDB error while {doing} (table {table}, position {position:?}): {}", mysql_cause(.cause))]
    Server {
        doing: &'static str,
        table: String,
        position: String,
        cause: Box<mysql_async::Error>,
    },

    #[error("unsupported server: {0}")]
    Unsupported(String),
}

/// How the watched table went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// `DROP TABLE` (`database: false`) or `DROP DATABASE` of its database.
    Dropped { database: bool },
    /// Renamed (`RENAME TABLE`, `ALTER TABLE ... RENAME`) to `to` (`db.table`).
    Renamed { to: String },
    /// Moved into a partition of another table (`ALTER TABLE t CONVERT TABLE watched TO
    /// PARTITION`).
    IntoPartition { of: String },
}

impl Gone {
    fn what(&self) -> String {
        match self {
            Gone::Dropped { database: false } => "dropped (DROP TABLE)".into(),
            Gone::Dropped { database: true } => "dropped with its database (DROP DATABASE)".into(),
            Gone::Renamed { to } => format!("renamed to {to}"),
            Gone::IntoPartition { of } => {
                format!("moved into a partition of {of} (ALTER TABLE ... CONVERT TABLE)")
            }
        }
    }

    fn fix(&self, table: &str) -> String {
        match self {
            Gone::Renamed { to } => format!(
                "If that was a mistake, rename it back (RENAME TABLE {to} TO {table}) and restart \
                 vecsync: it resumes where it stopped. To follow the table under its new name, \
                 restart with --table {to} --snapshot always (and a checkpoint file of its own)"
            ),
            _ => "If that was intended, stop vecsync (and remove its checkpoint). If the table \
                  is back (recreated or restored), restart with --snapshot always: vecsync \
                  re-reads it and streams on from there"
                .into(),
        }
    }
}

/// The MariaDB versions whose binlog events vecsync decodes (the README says the same).
pub const SUPPORTED_VERSIONS: &str = "10.6 to 11.8";

impl SourceError {
    /// A failed query of `doing` on `table`: [`Connection`](Self::Connection) when reconnecting
    /// may help (the network, a restarting server), else [`Server`](Self::Server).
    pub(crate) fn from_mysql(
        doing: &'static str,
        table: &crate::config::TableRef,
        e: mysql_async::Error,
    ) -> Self {
        if is_transient_mysql(&e) {
            SourceError::Connection {
                doing,
                table: table.to_string(),
                position: String::new(),
                cause: Box::new(e),
            }
        } else {
            SourceError::Server {
                doing,
                table: table.to_string(),
                position: String::new(),
                cause: Box::new(e),
            }
        }
    }

    /// True when reconnecting (and resuming from the last commit) may succeed: the network or
    /// the server went away, or no reachable server has the position while another one is
    /// unreachable. False for errors that need the
    /// operator: settings, privileges, a purged or diverged position, undecodable events.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Connect { .. }
            | SourceError::Connection { .. }
            | SourceError::Silent { .. }
            | SourceError::NoServer { .. } => true,
            SourceError::Server { cause, .. } => is_transient_mysql(cause),
            _ => false,
        }
    }

    /// True when the stored position can only be recovered from by a new snapshot.
    pub fn is_purged(&self) -> bool {
        matches!(self, SourceError::Purged { .. })
    }

    /// True when the server has moved on without vecsync's position (see [`SourceError::Diverged`]).
    pub fn is_diverged(&self) -> bool {
        matches!(self, SourceError::Diverged { .. })
    }

    /// True when this server cannot stream from the position, but another one may: it is
    /// unreachable, behind, diverged or purged the binlog.
    pub(crate) fn try_another_server(&self) -> bool {
        matches!(
            self,
            SourceError::Connect { .. }
                | SourceError::Behind { .. }
                | SourceError::Diverged { .. }
                | SourceError::Purged { .. }
        )
    }
}

/// A driver error's text with each cause once: `mysql_async` prints `Input/output error:` once
/// for its error and again for its I/O error, and wraps server errors in quotes.
pub(crate) fn mysql_cause(e: &mysql_async::Error) -> String {
    use mysql_async::{Error, IoError};
    match e {
        Error::Io(IoError::Io(io)) => format!("I/O error: {io}"),
        Error::Io(IoError::Tls(tls)) => format!("TLS error: {tls}"),
        Error::Server(s) => format!("ERROR {} ({}): {}", s.code, s.state, s.message),
        Error::Driver(d) => d.to_string(),
        Error::Url(u) => u.to_string(),
        Error::Other(o) => o.to_string(),
    }
}

/// MariaDB/driver errors that go away by reconnecting.
pub(crate) fn is_transient_mysql(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
        mysql_async::Error::Server(s) => matches!(
            s.code,
            // too many connections, shutdown in progress, lock wait/deadlock, connection
            // killed, lost connection, server gone away, query interrupted
            1040 | 1053
                | 1205
                | 1213
                | 1317
                | 1927
                | 2006
                | 2013
                | 1080
                | 1152
                | 1158
                | 1159
                | 1160
                | 1161
        ),
        mysql_async::Error::Other(_) => true,
        mysql_async::Error::Url(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{:#}` of an error, as the binary prints it: the message, then each source.
    fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = e.source();
        while let Some(s) = next {
            out.push(s.to_string());
            next = s.source();
        }
        out
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let e = SourceError::Connect {
            url: "mysql://u@db:3306".into(),
            cause: Box::new(mysql_async::Error::Io(mysql_async::IoError::Io(io))),
        };
        let printed = chain(&e).join(": ");
        assert_eq!(
            printed.matches("Connection refused").count(),
            1,
            "{printed}"
        );
        assert_eq!(printed.matches("error").count(), 1, "{printed}");
        assert!(printed.contains("mysql://u@db:3306"), "{printed}");
        let e = SourceError::Server {
            doing: "reading",
            table: "c.p".into(),
            position: String::new(),
            cause: Box::new(mysql_async::Error::Server(mysql_async::ServerError {
                code: 1146,
                message: "Table 'c.p' doesn't exist".into(),
                state: "42S02".into(),
            })),
        };
        let printed = chain(&e).join(": ");
        assert_eq!(printed.matches("doesn't exist").count(), 1, "{printed}");
    }
}
