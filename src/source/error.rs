//! The source's errors, split into transient ones (reconnect and resume from the last commit) and
//! definite ones (stop, and tell the operator what to change).
//!
//! Every error that happens while replicating carries the table and the last fully handled GTID
//! position, so a log line alone says where replication stopped.

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

    #[error("cannot reach MariaDB at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: Box<mysql_async::Error>,
    },

    #[error(
        "lost the MariaDB connection while {doing} (table {table}, position {position:?}): {source}"
    )]
    Connection {
        doing: &'static str,
        table: String,
        position: String,
        #[source]
        source: Box<mysql_async::Error>,
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

    #[error("MariaDB error while {doing} (table {table}, position {position:?}): {source}")]
    Server {
        doing: &'static str,
        table: String,
        position: String,
        #[source]
        source: Box<mysql_async::Error>,
    },

    #[error("unsupported server: {0}")]
    Unsupported(String),
}

impl SourceError {
    /// True when reconnecting (and resuming from the last commit) may succeed: the network or
    /// the server went away. False for errors that need the operator: settings, privileges,
    /// a purged position, undecodable events.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Connect { .. }
            | SourceError::Connection { .. }
            | SourceError::Silent { .. } => true,
            SourceError::Server { source, .. } => is_transient_mysql(source),
            _ => false,
        }
    }

    /// True when the stored position can only be recovered from by a new snapshot.
    pub fn is_purged(&self) -> bool {
        matches!(self, SourceError::Purged { .. })
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
