//! The replication client: connect as a replica, stream the binlog from a MariaDB GTID position,
//! and turn the watched table's row events into change events, one transaction at a time.
//!
//! # Protocol
//! `mysql_async`'s binlog stream does the packet work; MariaDB's GTID start is set up with session
//! variables (`@mariadb_slave_capability=4`, `@slave_connect_state`, `@master_heartbeat_period`)
//! before a plain `COM_BINLOG_DUMP`, because `mysql_async`'s GTID request is MySQL's. Every event
//! with a CRC32 checksum is verified. MariaDB's compressed events (`log_bin_compress=ON`) are
//! decompressed, never skipped.
//!
//! # Transactions
//! A MariaDB event group starts with a GTID event and ends with XID (transactional engines),
//! `COMMIT`/`ROLLBACK` (others), or after its single statement (DDL, flagged standalone). The
//! group's events are buffered and sent, in order, followed by a [`Commit`] with the position
//! after the group; a rolled-back group sends nothing but still advances the position. Groups
//! with no watched rows only advance the position: their commits are throttled to one a second,
//! and the last one is sent as soon as the stream goes idle, so the checkpoint catches up.
//!
//! # Snapshots
//! At every group boundary (and when woken while idle between groups) the stream calls the
//! snapshot [`Merge`] hook, which may pause the stream briefly to start a consistent read and
//! sends chunks where the stream reaches their read positions (see `snapshot::merge`).
//!
//! The buffer holds its share of the memory budget ([`crate::budget`]); when the budget is used
//! up (or 10,000 events are buffered) the buffered events are sent ahead of their commit, so a
//! transaction larger than the budget passes in parts.
//!
//! # XA
//! An `XA PREPARE` group ends with an XA_PREPARE event; its events are kept (not sent) until the
//! group of its `XA COMMIT` (then they are sent with that group's commit) or `XA ROLLBACK` (then
//! they are dropped). Meanwhile every commit position is held just before the oldest unresolved
//! prepare (see the emitter), so a restart reads the prepared group again. `XA COMMIT ... ONE
//! PHASE` is logged as an ordinary transaction.
//!
//! # Unknown events
//! Every event type is sorted by [`ev::kind_of`]: an event vecsync does not know stops the stream
//! with a definite error naming the type, the position and the server version, unless its
//! header is flagged `LOG_EVENT_IGNORABLE_F` (which says a reader may skip it). An INCIDENT
//! (the server lost events) stops it too.
//!
//! # Liveness
//! A stream that sends nothing, not even a heartbeat, for twice the heartbeat period is presumed
//! dead and replaced (until its first heartbeat or transaction the server may still be scanning
//! its binlog for the start position, so a longer silence is allowed). Every query has a read
//! timeout. Progress, for the replicator's "failing at the same place" guard, is a complete event
//! group or a heartbeat, never the artificial events each connection starts with. The other way
//! round, the server waits for vecsync as long as back-pressure lasts (the session's
//! `net_write_timeout` is raised to its maximum).
//!
//! # Resumption
//! [`StreamState::position`] is always the position after the last complete group; reconnecting
//! from it replays nothing that was already sent, and loses nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use mysql_async::binlog::BinlogChecksumAlg;
use mysql_async::binlog::events::{BinlogEventHeader, Event};
use mysql_async::prelude::Queryable;

use crate::budget::{Budgeted, BytePermit, event_bytes};
use crate::config::TableRef;
use crate::event::{ChangeEvent, Commit, Op, Row, Source, SourceMessage, now_ms};
use crate::position::{Gtid, GtidPosition};

use super::columns::{self, Collations, ColumnInfo, SharedLayout, TableLayout};
use super::connection::{Endpoint, timed};
use super::emitter::{Emitter, Interrupt, PreparedGroup};
use super::error::{SourceError, is_transient_mysql};
use super::mariadb_events::{
    self as ev, EventKind, LOG_EVENT_ARTIFICIAL_F, LOG_EVENT_IGNORABLE_F, MalformedEvent,
    QueryLayout, Reader, RowsKind, XaRole, event_type,
};
use super::rows::{Cell, RowError, decode_image};
use super::snapshot::Merge;
use super::statement::{self, Gone, Statement};
use super::table_map;
use super::values::cell_to_json;

/// Commits of groups without watched rows are sent at most this often while busy...
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// ...and this long after the stream went quiet.
const IDLE_COMMIT_DELAY: Duration = Duration::from_millis(200);
/// A transaction's events are sent ahead of its commit once this many are buffered (or the
/// memory budget is used up), so one huge transaction cannot exhaust memory. (Only a ROLLBACK in
/// the binlog, which needs a non-transactional table in the same transaction, could then have
/// been sent in vain.)
const MAX_BUFFERED_EVENTS: usize = 10_000;
/// How long the server may stay silent after the dump request before its first heartbeat or
/// transaction: it may be scanning a large binlog file for the start position.
const STARTUP_SILENCE: Duration = Duration::from_secs(60);
/// A prepared XA transaction unresolved for this long is worth a warning.
const XA_WARN_AFTER_MS: i64 = 60_000;

/// What the stream needs to know, shared by every reconnect.
pub(crate) struct StreamContext<'a> {
    pub table: &'a TableRef,
    pub replica_server_id: u32,
    pub heartbeat: Duration,
    /// The server to stream from.
    pub endpoint: &'a Endpoint,
    /// Its `@@version`, for error messages.
    pub server_version: &'a str,
    pub collations: &'a Collations,
    pub emitter: &'a Emitter,
}

/// Where the stream is; survives reconnects.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamState {
    /// The position after the last complete event group.
    pub position: GtidPosition,
    /// The current binlog file.
    pub file: String,
    /// Set once the current connection completed an event group or heard a heartbeat (resets
    /// retry counting). The artificial events every connection starts with do not count.
    pub progressed: bool,
    /// Whether the information_schema fallback was already reported.
    pub warned_schema_fallback: bool,
}

/// Connect and stream from `state.position` until cancelled, an error, or the snapshot hook asks
/// the stream to stop (`Ok`: a keyless table's one-read fallback must run).
pub(crate) async fn stream(
    ctx: &StreamContext<'_>,
    state: &mut StreamState,
    merge: &mut Merge,
) -> Result<(), Interrupt> {
    state.progressed = false;
    let mut conn = ctx.endpoint.connect().await?;
    let start = state.position.to_string();
    tracing::info!(table = %ctx.table, position = %start, server = %ctx.endpoint.url, "streaming the binlog");
    let setup = [
        // 4 = MARIA_SLAVE_CAPABILITY_GTID: GTID events, and @slave_connect_state is honoured.
        "SET @mariadb_slave_capability = 4".to_owned(),
        format!("SET @slave_connect_state = '{start}'"),
        format!(
            "SET @master_heartbeat_period = {}",
            ctx.heartbeat.as_nanos().max(1_000_000)
        ),
        "SET @master_binlog_checksum = @@global.binlog_checksum".to_owned(),
        // vecsync stops reading on purpose while the pipeline is busy (back-pressure): the dump
        // thread must wait for it rather than drop the stream after net_write_timeout (60 s by
        // default). A dead vecsync still closes the connection; a dead network still times out
        // in TCP.
        "SET SESSION net_write_timeout = 31536000".to_owned(),
    ];
    let limit = ctx.endpoint.read_timeout;
    for sql in setup {
        timed(limit, conn.query_drop(sql))
            .await
            .map_err(|e| stream_error(e, ctx, &state.position))?;
    }
    let mut binlog = timed(
        limit,
        conn.get_binlog_stream(mysql_async::BinlogStreamRequest::new(ctx.replica_server_id)),
    )
    .await
    .map_err(|e| stream_error(e, ctx, &state.position))?;

    let mut decoder = Decoder::new(ctx, state);
    let status = ctx.emitter.status();
    let mut first_packet = true;
    // Snapshot merge: a boundary right after connecting, nothing sent yet.
    let mut at_boundary = true;
    let result = loop {
        if std::mem::take(&mut at_boundary) && decoder.group.is_none() {
            if let Err(e) = decoder.boundary(merge).await {
                break Err(e);
            }
            if merge.wants_fallback() {
                break Ok(());
            }
        }
        let silence_limit = if decoder.state.progressed {
            ctx.heartbeat * 2
        } else {
            (ctx.heartbeat * 2).max(STARTUP_SILENCE)
        };
        let remaining = silence_limit.saturating_sub(decoder.silent_for);
        let wait = if decoder.pending.is_some() {
            IDLE_COMMIT_DELAY.min(remaining)
        } else {
            remaining
        };
        // mysql_common panics on some malformed packets (a short event body): turn that into
        // an error instead of losing the task.
        let polled = std::panic::AssertUnwindSafe(binlog.next()).catch_unwind();
        let idle = decoder.group.is_none();
        let next = tokio::select! {
            biased;
            () = ctx.emitter.cancel().cancelled() => break Err(Interrupt::Stopped),
            next = tokio::time::timeout(wait, polled) => next,
            // Only when the binlog has nothing waiting: a credit came back, a request arrived.
            () = merge.wake(), if idle => {
                at_boundary = true;
                continue;
            }
        };
        let next = match next {
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                break Err(SourceError::Event {
                    table: ctx.table.to_string(),
                    position: decoder.state.position.to_string(),
                    file: decoder.state.file.clone(),
                    pos: 0,
                    reason: format!("the binlog packet parser failed on a malformed event: {what}"),
                }
                .into());
            }
            Ok(Ok(item)) => Ok(item),
            Err(elapsed) => Err(elapsed),
        };
        match next {
            Err(_) if decoder.pending.is_some() => {
                if let Err(e) = decoder.flush_pending().await {
                    break Err(e);
                }
                at_boundary = true;
                decoder.silent_for += wait;
            }
            Err(_) => {
                break Err(SourceError::Silent {
                    seconds: silence_limit.as_secs(),
                    table: ctx.table.to_string(),
                    position: decoder.state.position.to_string(),
                }
                .into());
            }
            Ok(None) => {
                break Err(SourceError::Connection {
                    doing: "streaming the binlog",
                    table: ctx.table.to_string(),
                    position: decoder.state.position.to_string(),
                    cause: Box::new(mysql_async::Error::Driver(
                        mysql_async::DriverError::ConnectionClosed,
                    )),
                }
                .into());
            }
            Ok(Some(Err(e))) => {
                break Err(stream_error(e, ctx, &decoder.state.position).into());
            }
            Ok(Some(Ok(event))) => {
                decoder.silent_for = Duration::ZERO;
                if first_packet {
                    first_packet = false;
                    status.connected(&ctx.endpoint.url);
                } else {
                    status.heard();
                }
                if let Err(e) = decoder.handle(&event).await {
                    break Err(e);
                }
                at_boundary = true;
            }
        }
    };
    if let Some(conn) = decoder.meta_conn.take() {
        let _ = conn.disconnect().await;
    }
    // The stream's connection is dropped with it: a COM_BINLOG_DUMP cannot be ended politely.
    drop(binlog);
    result
}

/// Classify an error of the replication connection.
fn stream_error(
    e: mysql_async::Error,
    ctx: &StreamContext<'_>,
    position: &GtidPosition,
) -> SourceError {
    let (table, position) = (ctx.table.to_string(), position.to_string());
    let url = ctx.endpoint.url.clone();
    match &e {
        // ER_MASTER_FATAL_ERROR_READING_BINLOG
        mysql_async::Error::Server(s) if s.code == 1236 => {
            let message = s.message.clone();
            match start_refusal(&message) {
                Refusal::Purged => SourceError::Purged {
                    table,
                    position,
                    message,
                },
                Refusal::Diverged => SourceError::Diverged {
                    url,
                    table,
                    position,
                    message,
                },
                Refusal::Behind => SourceError::Behind {
                    url,
                    table,
                    position,
                    message,
                },
                Refusal::Other => SourceError::BadPosition {
                    table,
                    position,
                    message,
                },
            }
        }
        // ER_SPECIFIC_ACCESS_DENIED_ERROR
        mysql_async::Error::Server(s) if s.code == 1227 => SourceError::Privilege {
            user: ctx.endpoint.user.clone(),
            privilege: "REPLICATION SLAVE",
            why: "streaming the binlog needs",
            fix: format!("GRANT REPLICATION SLAVE ON *.* TO the user ({})", s.message),
        },
        _ if is_transient_mysql(&e) => SourceError::Connection {
            doing: "streaming the binlog",
            table,
            position,
            cause: Box::new(e),
        },
        _ => SourceError::Server {
            doing: "streaming the binlog",
            table,
            position,
            cause: Box::new(e),
        },
    }
}

/// Why a server refused to stream from a GTID position (its 1236 answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The binlog files that hold the position are gone.
    Purged,
    /// The position is not in its binlog, which has higher sequence numbers in that domain
    /// (ER_GTID_POSITION_NOT_FOUND_IN_BINLOG2): the servers' histories differ.
    Diverged,
    /// The position is not (yet) in its binlog, which has nothing later in that domain
    /// (ER_GTID_POSITION_NOT_FOUND_IN_BINLOG): a replica that has not caught up.
    Behind,
    Other,
}

/// Sort MariaDB's 1236 messages (sql_repl.cc) by what they mean.
fn start_refusal(message: &str) -> Refusal {
    let m = message.to_ascii_lowercase();
    if m.contains("purged") {
        Refusal::Purged
    } else if m.contains("diverged") || m.contains("higher sequence numbers") {
        Refusal::Diverged
    } else if m.contains("not in the master's binlog")
        || m.contains("not found in binlog")
        || m.contains("is not in the master")
    {
        Refusal::Behind
    } else {
        Refusal::Other
    }
}

/// An event group being read.
struct Group {
    gtid: Gtid,
    standalone: bool,
    xa: XaRole,
    /// The group's domain's GTID before it.
    before: Option<Gtid>,
    /// Where the group starts (`file:pos`).
    at: String,
    /// Buffered events, each with its share of the memory budget.
    events: Vec<(ChangeEvent, BytePermit)>,
    bytes: usize,
    /// Events already sent ahead of the commit (see [`MAX_BUFFERED_EVENTS`]).
    sent_early: usize,
}

/// Per-connection decoding state.
struct Decoder<'c, 's> {
    ctx: &'c StreamContext<'c>,
    state: &'s mut StreamState,
    group: Option<Group>,
    /// TABLE_MAP ids of the current group: `Some` for the watched table.
    tables: HashMap<u64, Option<SharedLayout>>,
    /// The last watched TABLE_MAP (without its table id) and its layout, reused while the table
    /// does not change.
    last_map: Option<(Vec<u8>, SharedLayout)>,
    /// information_schema's view of the table, when TABLE_MAPs lack metadata.
    schema: Option<Arc<Vec<ColumnInfo>>>,
    meta_conn: Option<mysql_async::Conn>,
    /// The newest commit not yet sent (a group without watched rows).
    pending: Option<Commit>,
    last_commit_sent: Instant,
    /// How long the stream has been silent (across idle commit flushes).
    silent_for: Duration,
}

impl<'c, 's> Decoder<'c, 's> {
    fn new(ctx: &'c StreamContext<'c>, state: &'s mut StreamState) -> Self {
        Self {
            ctx,
            state,
            group: None,
            tables: HashMap::new(),
            last_map: None,
            schema: None,
            meta_conn: None,
            pending: None,
            last_commit_sent: Instant::now(),
            silent_for: Duration::ZERO,
        }
    }

    /// Between two groups: let the snapshot merge send what is due and start its next read.
    async fn boundary(&mut self, merge: &mut Merge) -> Result<(), Interrupt> {
        merge
            .at_boundary(&self.state.position, &mut self.pending, self.ctx.emitter)
            .await
    }

    fn event_pos(header: &BinlogEventHeader) -> u64 {
        u64::from(header.log_pos().saturating_sub(header.event_size()))
    }

    fn event_error(&self, header: &BinlogEventHeader, reason: impl Into<String>) -> SourceError {
        SourceError::Event {
            table: self.ctx.table.to_string(),
            position: self.state.position.to_string(),
            file: self.state.file.clone(),
            pos: Self::event_pos(header),
            reason: reason.into(),
        }
    }

    fn malformed(&self, header: &BinlogEventHeader, e: MalformedEvent) -> SourceError {
        self.event_error(header, e.to_string())
    }

    fn at(&self, header: &BinlogEventHeader) -> String {
        format!("{}:{}", self.state.file, Self::event_pos(header))
    }

    async fn handle(&mut self, event: &Event) -> Result<(), Interrupt> {
        let header = event.header();
        let ty = header.event_type_raw();
        self.verify_checksum(event)?;
        let data = event.data();
        match ty {
            event_type::ROTATE => {
                // The first, artificial ROTATE arrives before any FORMAT_DESCRIPTION told the
                // parser about checksums, so its checksum may still be attached.
                let data = if header.flags_raw() & LOG_EVENT_ARTIFICIAL_F != 0
                    && event.checksum().is_none()
                {
                    ev::strip_unparsed_checksum(&header_bytes(&header), data)
                } else {
                    data
                };
                let (file, _) = ev::parse_rotate(data).map_err(|e| self.malformed(&header, e))?;
                tracing::debug!(%file, "binlog file");
                self.state.file = file;
            }
            event_type::GTID => {
                let gtid = ev::parse_gtid(data, header.server_id())
                    .map_err(|e| self.malformed(&header, e))?;
                if self.group.is_some() {
                    // The previous group ended without an event we recognise as its end: it is
                    // complete, commit it.
                    self.end_group(&header, true).await?;
                }
                self.group = Some(Group {
                    gtid: gtid.gtid,
                    standalone: gtid.standalone,
                    xa: gtid.xa,
                    before: self.state.position.get(gtid.gtid.domain_id),
                    at: self.at(&header),
                    events: Vec::new(),
                    bytes: 0,
                    sent_early: 0,
                });
            }
            event_type::TABLE_MAP => self.table_map(&header, data).await?,
            event_type::QUERY => self.query(&header, data, QueryLayout::Plain).await?,
            event_type::QUERY_COMPRESSED => {
                self.query(&header, data, QueryLayout::Compressed).await?;
            }
            event_type::EXECUTE_LOAD_QUERY => {
                self.query(&header, data, QueryLayout::ExecuteLoad).await?;
            }
            event_type::XID => self.end_group(&header, true).await?,
            event_type::XA_PREPARE => {
                let one_phase =
                    ev::parse_xa_prepare(data).map_err(|e| self.malformed(&header, e))?;
                if one_phase {
                    self.end_group(&header, true).await?;
                } else {
                    self.prepared(&header).await?;
                }
            }
            event_type::HEARTBEAT => {
                self.state.progressed = true;
                self.flush_pending().await?;
            }
            t if ev::rows_event_kind(t).is_some() => self.rows(&header, t, data).await?,
            event_type::GTID_LIST => {
                // The binlog state at the start of a file; our position already accounts for it.
                let list = ev::parse_gtid_list(data).map_err(|e| self.malformed(&header, e))?;
                tracing::debug!(gtid_list = %list.into_iter().collect::<GtidPosition>(), file = %self.state.file, "binlog file state");
            }
            event_type::FORMAT_DESCRIPTION => {}
            other => match ev::kind_of(other) {
                EventKind::Handled | EventKind::Ignored => {}
                EventKind::Incident => {
                    let (number, message) =
                        ev::parse_incident(data).map_err(|e| self.malformed(&header, e))?;
                    return Err(SourceError::Incident {
                        table: self.ctx.table.to_string(),
                        position: self.state.position.to_string(),
                        at: self.at(&header),
                        number,
                        message,
                    }
                    .into());
                }
                EventKind::Unknown if header.flags_raw() & LOG_EVENT_IGNORABLE_F != 0 => {
                    tracing::debug!(
                        event_type = other,
                        at = %self.at(&header),
                        "unknown event flagged ignorable; skipped as its flag allows"
                    );
                }
                EventKind::Unknown => {
                    return Err(SourceError::UnknownEvent {
                        table: self.ctx.table.to_string(),
                        position: self.state.position.to_string(),
                        at: self.at(&header),
                        type_code: other,
                        server_version: self.ctx.server_version.to_owned(),
                    }
                    .into());
                }
            },
        }
        Ok(())
    }

    fn verify_checksum(&self, event: &Event) -> Result<(), SourceError> {
        if let (Ok(Some(alg @ BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32)), Some(sum)) =
            (event.footer().get_checksum_alg(), event.checksum())
        {
            let computed = event.calc_checksum(alg).to_le_bytes();
            if computed != sum {
                return Err(self.event_error(
                    &event.header(),
                    format!(
                        "CRC32 checksum mismatch (event says {:08x}, content gives {:08x}): the \
                         event was corrupted on disk or in transit; check the server's binlog \
                         with mariadb-binlog --verify-binlog-checksum",
                        u32::from_le_bytes(sum),
                        u32::from_le_bytes(computed)
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn table_map(
        &mut self,
        header: &BinlogEventHeader,
        data: &[u8],
    ) -> Result<(), Interrupt> {
        let (db, table) = table_map::parse_names(data).map_err(|e| self.malformed(header, e))?;
        let table_id = ev::rows_table_id(data).map_err(|e| self.malformed(header, e))?;
        if db != self.ctx.table.db.as_bytes() || table != self.ctx.table.table.as_bytes() {
            self.tables.insert(table_id, None);
            return Ok(());
        }
        let body = data.get(6..).unwrap_or_default();
        if let Some((bytes, layout)) = &self.last_map {
            if bytes.as_slice() == body {
                self.tables.insert(table_id, Some(layout.clone()));
                return Ok(());
            }
        }
        let tm = table_map::parse_table_map(data).map_err(|e| self.malformed(header, e))?;
        let layout = match columns::layout(&tm, self.ctx.collations, None) {
            Ok(l) => l,
            Err(_) => self.layout_from_schema(header, &tm).await?,
        };
        let layout = Arc::new(layout);
        self.last_map = Some((body.to_vec(), layout.clone()));
        self.tables.insert(table_id, Some(layout));
        Ok(())
    }

    /// Complete a bare TABLE_MAP with information_schema, re-reading it once if the width
    /// does not match (the table may have changed since it was read).
    async fn layout_from_schema(
        &mut self,
        header: &BinlogEventHeader,
        tm: &table_map::TableMap,
    ) -> Result<TableLayout, Interrupt> {
        if !self.state.warned_schema_fallback {
            self.state.warned_schema_fallback = true;
            tracing::warn!(
                table = %self.ctx.table,
                "TABLE_MAP events carry no column names (binlog_row_metadata is not FULL); \
                 reading them from information_schema"
            );
        }
        let mut fresh = false;
        loop {
            let schema = match &self.schema {
                Some(s) => s.clone(),
                None => {
                    fresh = true;
                    let s = Arc::new(self.load_schema(header).await?);
                    self.schema = Some(s.clone());
                    s
                }
            };
            match columns::layout(tm, self.ctx.collations, Some(&schema)) {
                Ok(l) => return Ok(l),
                Err(_) if !fresh => self.schema = None,
                Err(e) => return Err(self.event_error(header, e.0).into()),
            }
        }
    }

    async fn load_schema(
        &mut self,
        header: &BinlogEventHeader,
    ) -> Result<Vec<ColumnInfo>, Interrupt> {
        if self.meta_conn.is_none() {
            self.meta_conn = Some(self.ctx.endpoint.connect().await?);
        }
        let limit = self.ctx.endpoint.read_timeout;
        let conn = self.meta_conn.as_mut().ok_or(Interrupt::Stopped)?;
        let loaded = timed(
            limit,
            columns::load_schema(conn, &self.ctx.table.db, &self.ctx.table.table),
        )
        .await;
        let schema = match loaded {
            Ok(s) => s,
            Err(e) => {
                // The connection may be mid-answer (a timeout): never reuse it.
                self.meta_conn = None;
                return Err(SourceError::Connection {
                    doing: "reading the table's columns from information_schema",
                    table: self.ctx.table.to_string(),
                    position: self.state.position.to_string(),
                    cause: Box::new(e),
                }
                .into());
            }
        };
        if schema.is_empty() {
            return Err(self
                .event_error(
                    header,
                    "the table is not in information_schema any more (dropped?) and its binlog \
                     events carry no column names",
                )
                .into());
        }
        Ok(schema)
    }

    async fn rows(
        &mut self,
        header: &BinlogEventHeader,
        ty: u8,
        data: &[u8],
    ) -> Result<(), Interrupt> {
        let table_id = ev::rows_table_id(data).map_err(|e| self.malformed(header, e))?;
        let Some(Some(layout)) = self.tables.get(&table_id).cloned() else {
            return Ok(());
        };
        let rows = ev::parse_rows(ty, data).map_err(|e| self.malformed(header, e))?;
        if rows.width != layout.wire.len() {
            return Err(self
                .event_error(
                    header,
                    format!(
                        "rows event has {} columns, its TABLE_MAP {}",
                        rows.width,
                        layout.wire.len()
                    ),
                )
                .into());
        }
        let full = |p: &[bool]| p.iter().all(|b| *b);
        if !full(&rows.present) || rows.present_after.as_deref().is_some_and(|p| !full(p)) {
            return Err(self
                .event_error(
                    header,
                    "the row image lacks columns: the session that wrote it had \
                     binlog_row_image other than FULL. Set binlog_row_image=FULL globally and \
                     reconnect that client; to move past this event, restart with --gtid after \
                     it and re-snapshot",
                )
                .into());
        }
        let Some(group) = &self.group else {
            return Err(self
                .event_error(
                    header,
                    "rows event outside an event group (no GTID event before it)",
                )
                .into());
        };
        let gtid = group.gtid.to_string();
        let mut r = Reader::new(&rows.rows, "ROWS");
        let mut row_index = 0u32;
        while r.remaining() > 0 {
            let before_image = decode_image(&mut r, &layout, &rows.present)
                .and_then(|cells| to_row(&layout, cells))
                .map_err(|e| self.event_error(header, e.to_string()))?;
            let (op, before, after) = match rows.kind {
                RowsKind::Write => (Op::Create, None, Some(before_image)),
                RowsKind::Delete => (Op::Delete, Some(before_image), None),
                RowsKind::Update => {
                    let present_after = rows.present_after.as_deref().unwrap_or(&rows.present);
                    let after_image = decode_image(&mut r, &layout, present_after)
                        .and_then(|cells| to_row(&layout, cells))
                        .map_err(|e| self.event_error(header, e.to_string()))?;
                    (Op::Update, Some(before_image), Some(after_image))
                }
            };
            let event = ChangeEvent {
                before,
                after,
                source: self.source(header, Some(gtid.clone()), row_index),
                op,
                ts_ms: now_ms(),
            };
            self.push_event(header, event).await?;
            row_index += 1;
        }
        Ok(())
    }

    fn source(&self, header: &BinlogEventHeader, gtid: Option<String>, row: u32) -> Source {
        Source {
            connector: "vecsync".into(),
            db: self.ctx.table.db.clone(),
            table: self.ctx.table.table.clone(),
            server_id: header.server_id(),
            gtid,
            file: self.state.file.clone(),
            pos: Self::event_pos(header),
            row,
            ts_ms: i64::from(header.timestamp()) * 1000,
            snapshot: "false".into(),
        }
    }

    /// Buffer one event of the current group with its share of the budget. When the budget is
    /// used up the buffered events go to the pipeline first (the source never waits for budget
    /// it holds itself), except for a prepared XA group, which must stay until its commit.
    async fn push_event(
        &mut self,
        header: &BinlogEventHeader,
        event: ChangeEvent,
    ) -> Result<(), Interrupt> {
        let bytes = event_bytes(&event);
        let emitter = self.ctx.emitter;
        let permit = match emitter.try_reserve(bytes) {
            Some(p) => p,
            None => {
                let Some(group) = self.group.as_ref() else {
                    return Ok(());
                };
                if matches!(group.xa, XaRole::Prepare(_)) {
                    // Prepared transactions may hold at most half the budget, so the stream
                    // always has room to go on (and to reach their commits).
                    let held = emitter.prepared_bytes() + group.bytes + bytes;
                    let total = emitter.budget().total();
                    if held > total / 2 {
                        return Err(SourceError::XaTooLarge {
                            table: self.ctx.table.to_string(),
                            at: self.at(header),
                            held_mb: held.div_ceil(1 << 20),
                            budget_mb: total >> 20,
                        }
                        .into());
                    }
                } else {
                    self.send_early().await?;
                }
                emitter.reserve(bytes).await?
            }
        };
        let Some(group) = self.group.as_mut() else {
            return Ok(());
        };
        group.events.push((event, permit));
        group.bytes += bytes;
        if group.events.len() >= MAX_BUFFERED_EVENTS && !matches!(group.xa, XaRole::Prepare(_)) {
            self.send_early().await?;
        }
        Ok(())
    }

    /// Send the current group's buffered events ahead of its commit.
    async fn send_early(&mut self) -> Result<(), Interrupt> {
        let Some(group) = self.group.as_mut() else {
            return Ok(());
        };
        let early = std::mem::take(&mut group.events);
        group.sent_early += early.len();
        group.bytes = 0;
        for (e, permit) in early {
            self.ctx
                .emitter
                .send_budgeted(Budgeted {
                    message: SourceMessage::Event(e),
                    permit,
                })
                .await?;
        }
        Ok(())
    }

    async fn query(
        &mut self,
        header: &BinlogEventHeader,
        data: &[u8],
        layout: QueryLayout,
    ) -> Result<(), Interrupt> {
        let q = ev::parse_query(data, layout).map_err(|e| self.malformed(header, e))?;
        let text = q.query_text();
        let kind = statement::classify(&text, &q.schema, &self.ctx.table.db, &self.ctx.table.table);
        match kind {
            Statement::Begin | Statement::Other => {}
            Statement::Commit => return self.end_group(header, true).await,
            Statement::Rollback => return self.end_group(header, false).await,
            Statement::XaCommit => self.xa_commit(header).await?,
            Statement::XaRollback => self.xa_rollback(),
            Statement::TruncateWatched => {
                let gtid = self.group.as_ref().map(|g| g.gtid.to_string());
                let event = ChangeEvent {
                    before: None,
                    after: None,
                    source: self.source(header, gtid, 0),
                    op: Op::Truncate,
                    ts_ms: now_ms(),
                };
                self.push_event(header, event).await?;
            }
            Statement::DdlOnWatched => {
                // Only the statement's first words: DDL text can carry anything.
                let kind: Vec<&str> = text.split_whitespace().take(2).collect();
                tracing::info!(table = %self.ctx.table, statement = %kind.join(" "), "schema change on the watched table; re-reading its columns");
                self.schema = None;
                self.last_map = None;
            }
            Statement::Reconcile { what } => {
                self.flush_pending().await?;
                return Err(Interrupt::Reconcile(format!(
                    "{what} ({}); its rows changed without row events",
                    self.at(header)
                )));
            }
            Statement::Gone(gone) => return Err(self.gone(header, gone).into()),
            Statement::DmlOnWatched { verb } => {
                // Never the statement's text: it carries row data.
                return Err(self
                    .event_error(
                        header,
                        format!(
                            "a change to the table was logged as an SQL statement (a {verb} \
                             statement), not as rows: the session that ran it had binlog_format \
                             other than ROW. Set binlog_format=ROW globally and reconnect that \
                             client; to move past this event, restart with --gtid after it and \
                             re-snapshot"
                        ),
                    )
                    .into());
            }
        }
        if self.group.as_ref().is_some_and(|g| g.standalone) {
            self.end_group(header, true).await?;
        }
        Ok(())
    }

    fn gone(&self, header: &BinlogEventHeader, how: Gone) -> SourceError {
        SourceError::TableGone {
            table: self.ctx.table.to_string(),
            position: self.state.position.to_string(),
            at: self.at(header),
            how,
        }
    }

    /// `XA COMMIT` of a prepared transaction: its held events join this group, which sends them
    /// with its commit.
    async fn xa_commit(&mut self, header: &BinlogEventHeader) -> Result<(), Interrupt> {
        let xid = match self.group.as_ref().map(|g| &g.xa) {
            Some(XaRole::Complete(xid)) => Some(xid.clone()),
            _ => None,
        };
        let prepared = xid.as_ref().and_then(|x| self.ctx.emitter.resolve(x));
        let Some(prepared) = prepared else {
            self.flush_pending().await?;
            return Err(Interrupt::Reconcile(format!(
                "XA COMMIT of {} ({}) whose XA PREPARE came before the position vecsync started \
                 from, so its changes are unknown",
                xid.map(|x| x.to_string())
                    .unwrap_or_else(|| "an unnamed transaction".into()),
                self.at(header)
            )));
        };
        tracing::debug!(xid = %prepared.xid, events = prepared.events.len(), "XA COMMIT: sending the prepared changes");
        if let Some(group) = self.group.as_mut() {
            group.events.extend(prepared.events);
            group.bytes += prepared.bytes;
        }
        Ok(())
    }

    /// `XA ROLLBACK` of a prepared transaction: its held events are dropped.
    fn xa_rollback(&mut self) {
        if let Some(XaRole::Complete(xid)) = self.group.as_ref().map(|g| &g.xa) {
            match self.ctx.emitter.resolve(xid) {
                Some(p) => {
                    tracing::debug!(xid = %p.xid, events = p.events.len(), "XA ROLLBACK: dropping the prepared changes");
                }
                // Prepared before the start position: nothing of it was applied, nothing to undo.
                None => {
                    tracing::debug!(%xid, "XA ROLLBACK of a transaction prepared before the start")
                }
            }
        }
    }

    /// The current group is an `XA PREPARE`: keep its events until its commit or rollback.
    async fn prepared(&mut self, header: &BinlogEventHeader) -> Result<(), Interrupt> {
        self.tables.clear();
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let XaRole::Prepare(xid) = group.xa else {
            return Err(self
                .event_error(
                    header,
                    "an XA_PREPARE event ends a group whose GTID event does not name an XA \
                     transaction",
                )
                .into());
        };
        self.state.position.advance(group.gtid);
        self.state.progressed = true;
        let ts_ms = i64::from(header.timestamp()) * 1000;
        self.ctx
            .emitter
            .status()
            .read_up_to(&self.state.position, ts_ms);
        self.ctx.emitter.prepare(PreparedGroup {
            xid,
            gtid: group.gtid,
            before: group.before,
            at: group.at,
            since_ms: now_ms(),
            events: group.events,
            bytes: group.bytes,
            warned: false,
        });
        // The commit is held before the prepare by the emitter, like every later one.
        self.queue_commit(Commit {
            position: self.state.position.clone(),
            ts_ms,
            seen_ms: now_ms(),
        })
        .await
    }

    /// The current group is complete: send its events and commit, or drop them (rollback).
    async fn end_group(
        &mut self,
        header: &BinlogEventHeader,
        commit: bool,
    ) -> Result<(), Interrupt> {
        self.tables.clear();
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        if let XaRole::Prepare(xid) = &group.xa {
            // A prepare group always ends with XA_PREPARE; anything else is not what the server
            // documents, and guessing could apply rows that were never committed.
            return Err(self
                .event_error(
                    header,
                    format!(
                        "the XA PREPARE group of {xid} ({}) did not end with an XA_PREPARE event",
                        group.at
                    ),
                )
                .into());
        }
        self.state.position.advance(group.gtid);
        self.state.progressed = true;
        let done = Commit {
            position: self.state.position.clone(),
            ts_ms: i64::from(header.timestamp()) * 1000,
            seen_ms: now_ms(),
        };
        self.ctx
            .emitter
            .status()
            .read_up_to(&done.position, done.ts_ms);
        self.ctx
            .emitter
            .warn_if_unresolved(now_ms(), XA_WARN_AFTER_MS);
        if !commit {
            if group.sent_early > 0 {
                tracing::warn!(
                    table = %self.ctx.table,
                    gtid = %group.gtid,
                    events = group.sent_early,
                    "a rolled-back transaction's first events were already sent"
                );
            }
        } else if !group.events.is_empty() || group.sent_early > 0 {
            for (e, permit) in group.events {
                self.ctx
                    .emitter
                    .send_budgeted(Budgeted {
                        message: SourceMessage::Event(e),
                        permit,
                    })
                    .await?;
            }
            self.pending = None;
            return self.send_commit(done).await;
        }
        self.queue_commit(done).await
    }

    /// A commit of a group without watched rows: the position moves, lazily.
    async fn queue_commit(&mut self, done: Commit) -> Result<(), Interrupt> {
        self.pending = Some(done);
        if self.last_commit_sent.elapsed() >= COMMIT_INTERVAL {
            self.flush_pending().await?;
        }
        Ok(())
    }

    async fn flush_pending(&mut self) -> Result<(), Interrupt> {
        match self.pending.take() {
            Some(c) => self.send_commit(c).await,
            None => Ok(()),
        }
    }

    async fn send_commit(&mut self, commit: Commit) -> Result<(), Interrupt> {
        self.ctx.emitter.send(SourceMessage::Commit(commit)).await?;
        self.last_commit_sent = Instant::now();
        Ok(())
    }
}

/// A decoded image as a JSON row (present columns only; FULL images have them all).
fn to_row(layout: &TableLayout, cells: Vec<Option<Cell>>) -> Result<Row, RowError> {
    let mut row = Row::new();
    for ((cell, wire), column) in cells.into_iter().zip(&layout.wire).zip(&layout.columns) {
        if let Some(cell) = cell {
            row.insert(column.name.clone(), cell_to_json(cell, *wire, column)?);
        }
    }
    Ok(row)
}

/// The 19 header bytes as they were on the wire (for checksums the parser did not handle).
fn header_bytes(h: &BinlogEventHeader) -> [u8; 19] {
    let mut b = [0u8; 19];
    b[0..4].copy_from_slice(&h.timestamp().to_le_bytes());
    b[4] = h.event_type_raw();
    b[5..9].copy_from_slice(&h.server_id().to_le_bytes());
    b[9..13].copy_from_slice(&h.event_size().to_le_bytes());
    b[13..17].copy_from_slice(&h.log_pos().to_le_bytes());
    b[17..19].copy_from_slice(&h.flags_raw().to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_the_servers_refusals() {
        // MariaDB 10.11's texts (sql_repl.cc), as the dump thread sends them with error 1236.
        assert_eq!(
            start_refusal(
                "Could not find GTID state requested by slave in any binlog files. Probably the \
                 slave state is too old and required binlog files have been purged."
            ),
            Refusal::Purged
        );
        assert_eq!(
            start_refusal(
                "Error: connecting slave requested to start from GTID 0-1-11, which is not in \
                 the master's binlog. Since the master's binlog contains GTIDs with higher \
                 sequence numbers, it probably means that the slave has diverged due to \
                 executing extra erroneous transactions"
            ),
            Refusal::Diverged
        );
        assert_eq!(
            start_refusal(
                "Error: connecting slave requested to start from GTID 0-223344-999999, which is \
                 not in the master's binlog"
            ),
            Refusal::Behind
        );
        assert_eq!(
            start_refusal("binlog truncated in the middle of event"),
            Refusal::Other
        );
    }
}
