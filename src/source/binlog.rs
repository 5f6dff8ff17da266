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

use crate::config::TableRef;
use crate::event::{ChangeEvent, Commit, Op, Row, Source, SourceMessage, now_ms};
use crate::position::{Gtid, GtidPosition};

use super::columns::{self, Collations, ColumnInfo, SharedLayout, TableLayout};
use super::connection::Endpoint;
use super::emitter::{Emitter, Interrupt};
use super::error::{SourceError, is_transient_mysql};
use super::mariadb_events::{
    self as ev, LOG_EVENT_ARTIFICIAL_F, MalformedEvent, Reader, RowsKind, event_type,
};
use super::rows::{Cell, RowError, decode_image};
use super::snapshot::{Merge, SnapshotControl};
use super::statement::{self, Statement};
use super::table_map;
use super::values::cell_to_json;

/// Commits of groups without watched rows are sent at most this often while busy...
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// ...and this long after the stream went quiet.
const IDLE_COMMIT_DELAY: Duration = Duration::from_millis(200);
/// A transaction's events are sent ahead of its commit once this many are buffered, so one huge
/// transaction cannot exhaust memory. (Only a ROLLBACK in the binlog, which needs a
/// non-transactional table in the same transaction, could then have been sent in vain.)
const MAX_BUFFERED_EVENTS: usize = 10_000;

/// What the stream needs to know, shared by every reconnect.
pub(crate) struct StreamContext<'a> {
    pub table: &'a TableRef,
    pub replica_server_id: u32,
    pub heartbeat: Duration,
    pub endpoint: &'a Endpoint,
    pub collations: &'a Collations,
    pub emitter: &'a Emitter,
    /// For `start_reconciling_snapshot` when the binlog shows a change it cannot describe row
    /// by row (TRUNCATE PARTITION, a diverged failover: the "source" side calls it).
    #[allow(dead_code)]
    pub snapshot: &'a SnapshotControl,
}

/// Where the stream is; survives reconnects.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamState {
    /// The position after the last complete event group.
    pub position: GtidPosition,
    /// The current binlog file.
    pub file: String,
    /// Set once an event was handled on the current connection (resets retry counting).
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
    tracing::info!(table = %ctx.table, position = %start, "streaming the binlog");
    let setup = [
        // 4 = MARIA_SLAVE_CAPABILITY_GTID: GTID events, and @slave_connect_state is honoured.
        "SET @mariadb_slave_capability = 4".to_owned(),
        format!("SET @slave_connect_state = '{start}'"),
        format!(
            "SET @master_heartbeat_period = {}",
            ctx.heartbeat.as_nanos().max(1_000_000)
        ),
        "SET @master_binlog_checksum = @@global.binlog_checksum".to_owned(),
    ];
    for sql in setup {
        conn.query_drop(sql)
            .await
            .map_err(|e| stream_error(e, ctx.table, &state.position))?;
    }
    let mut binlog = conn
        .get_binlog_stream(mysql_async::BinlogStreamRequest::new(ctx.replica_server_id))
        .await
        .map_err(|e| stream_error(e, ctx.table, &state.position))?;

    let mut decoder = Decoder::new(ctx, state);
    let silence_limit = ctx.heartbeat * 2 + Duration::from_secs(5);
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
        let wait = if decoder.pending.is_some() {
            IDLE_COMMIT_DELAY
        } else {
            silence_limit
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
                    source: Box::new(mysql_async::Error::Driver(
                        mysql_async::DriverError::ConnectionClosed,
                    )),
                }
                .into());
            }
            Ok(Some(Err(e))) => {
                break Err(stream_error(e, ctx.table, &decoder.state.position).into());
            }
            Ok(Some(Ok(event))) => {
                if let Err(e) = decoder.handle(&event).await {
                    break Err(e);
                }
                decoder.state.progressed = true;
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
fn stream_error(e: mysql_async::Error, table: &TableRef, position: &GtidPosition) -> SourceError {
    let (table, position) = (table.to_string(), position.to_string());
    match &e {
        // ER_MASTER_FATAL_ERROR_READING_BINLOG
        mysql_async::Error::Server(s) if s.code == 1236 => {
            if s.message.contains("purged") {
                SourceError::Purged {
                    table,
                    position,
                    message: s.message.clone(),
                }
            } else {
                SourceError::BadPosition {
                    table,
                    position,
                    message: s.message.clone(),
                }
            }
        }
        // ER_SPECIFIC_ACCESS_DENIED_ERROR
        mysql_async::Error::Server(s) if s.code == 1227 => SourceError::Privilege {
            user: "the configured user".into(),
            privilege: "REPLICATION SLAVE",
            why: "streaming the binlog needs",
            fix: format!("GRANT REPLICATION SLAVE ON *.* TO the user ({})", s.message),
        },
        _ if is_transient_mysql(&e) => SourceError::Connection {
            doing: "streaming the binlog",
            table,
            position,
            source: Box::new(e),
        },
        _ => SourceError::Server {
            doing: "streaming the binlog",
            table,
            position,
            source: Box::new(e),
        },
    }
}

/// An event group being read.
struct Group {
    gtid: Gtid,
    standalone: bool,
    events: Vec<ChangeEvent>,
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
        }
    }

    /// Between two groups: let the snapshot merge send what is due and start its next read.
    async fn boundary(&mut self, merge: &mut Merge) -> Result<(), Interrupt> {
        merge
            .at_boundary(&self.state.position, &mut self.pending, self.ctx.emitter)
            .await
    }

    fn event_error(&self, header: &BinlogEventHeader, reason: impl Into<String>) -> SourceError {
        SourceError::Event {
            table: self.ctx.table.to_string(),
            position: self.state.position.to_string(),
            file: self.state.file.clone(),
            pos: u64::from(header.log_pos().saturating_sub(header.event_size())),
            reason: reason.into(),
        }
    }

    fn malformed(&self, header: &BinlogEventHeader, e: MalformedEvent) -> SourceError {
        self.event_error(header, e.to_string())
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
                    // The previous group ended without an event we recognise as its end (an
                    // XA COMMIT, for example): it is complete, commit it.
                    self.end_group(&header, true).await?;
                }
                self.group = Some(Group {
                    gtid: gtid.gtid,
                    standalone: gtid.standalone,
                    events: Vec::new(),
                    sent_early: 0,
                });
            }
            event_type::TABLE_MAP => self.table_map(&header, data).await?,
            event_type::QUERY | event_type::QUERY_COMPRESSED => {
                self.query(&header, data, ty == event_type::QUERY_COMPRESSED)
                    .await?;
            }
            event_type::XID => self.end_group(&header, true).await?,
            event_type::XA_PREPARE => {
                tracing::warn!(
                    table = %self.ctx.table,
                    "XA transaction: its rows are sent at XA PREPARE, before XA COMMIT or ROLLBACK"
                );
                self.end_group(&header, true).await?;
            }
            event_type::HEARTBEAT => self.flush_pending().await?,
            t if ev::rows_event_kind(t).is_some() => self.rows(&header, t, data).await?,
            event_type::GTID_LIST => {
                // The binlog state at the start of a file; our position already accounts for it.
                let list = ev::parse_gtid_list(data).map_err(|e| self.malformed(&header, e))?;
                tracing::debug!(gtid_list = %list.into_iter().collect::<GtidPosition>(), file = %self.state.file, "binlog file state");
            }
            event_type::FORMAT_DESCRIPTION
            | event_type::BINLOG_CHECKPOINT
            | event_type::ANNOTATE_ROWS
            | event_type::START_ENCRYPTION => {}
            other => tracing::trace!(event_type = other, "event ignored"),
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
        let conn = self.meta_conn.as_mut().ok_or(Interrupt::Stopped)?;
        let schema = columns::load_schema(conn, &self.ctx.table.db, &self.ctx.table.table)
            .await
            .map_err(|e| SourceError::Connection {
                doing: "reading the table's columns from information_schema",
                table: self.ctx.table.to_string(),
                position: self.state.position.to_string(),
                source: Box::new(e),
            })?;
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
        let mut produced = Vec::new();
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
            produced.push(ChangeEvent {
                before,
                after,
                source: self.source(header, Some(gtid.clone()), row_index),
                op,
                ts_ms: now_ms(),
            });
            row_index += 1;
        }
        self.push_events(produced).await
    }

    fn source(&self, header: &BinlogEventHeader, gtid: Option<String>, row: u32) -> Source {
        Source {
            connector: "vecsync".into(),
            db: self.ctx.table.db.clone(),
            table: self.ctx.table.table.clone(),
            server_id: header.server_id(),
            gtid,
            file: self.state.file.clone(),
            pos: u64::from(header.log_pos().saturating_sub(header.event_size())),
            row,
            ts_ms: i64::from(header.timestamp()) * 1000,
            snapshot: "false".into(),
        }
    }

    async fn push_events(&mut self, events: Vec<ChangeEvent>) -> Result<(), Interrupt> {
        let Some(group) = self.group.as_mut() else {
            return Ok(());
        };
        group.events.extend(events);
        if group.events.len() >= MAX_BUFFERED_EVENTS {
            let early: Vec<_> = group.events.drain(..).collect();
            group.sent_early += early.len();
            for e in early {
                self.ctx.emitter.send(SourceMessage::Event(e)).await?;
            }
        }
        Ok(())
    }

    async fn query(
        &mut self,
        header: &BinlogEventHeader,
        data: &[u8],
        compressed: bool,
    ) -> Result<(), Interrupt> {
        let q = ev::parse_query(data, compressed).map_err(|e| self.malformed(header, e))?;
        let text = q.query_text();
        let kind = statement::classify(&text, &q.schema, &self.ctx.table.db, &self.ctx.table.table);
        match kind {
            Statement::Begin | Statement::Other => {}
            Statement::Commit => return self.end_group(header, true).await,
            Statement::Rollback => return self.end_group(header, false).await,
            Statement::TruncateWatched => {
                let gtid = self.group.as_ref().map(|g| g.gtid.to_string());
                let event = ChangeEvent {
                    before: None,
                    after: None,
                    source: self.source(header, gtid, 0),
                    op: Op::Truncate,
                    ts_ms: now_ms(),
                };
                self.push_events(vec![event]).await?;
            }
            Statement::DdlOnWatched => {
                // Only the statement's first words: DDL text can carry anything.
                let kind: Vec<&str> = text.split_whitespace().take(2).collect();
                tracing::info!(table = %self.ctx.table, statement = %kind.join(" "), "schema change on the watched table; re-reading its columns");
                self.schema = None;
                self.last_map = None;
            }
            Statement::DmlOnWatched => {
                return Err(self
                    .event_error(
                        header,
                        format!(
                            "a change to the table was logged as an SQL statement, not as rows \
                             (`{}`): the session that ran it had binlog_format other than ROW. Set \
                             binlog_format=ROW globally and reconnect that client; to move past \
                             this event, restart with --gtid after it and re-snapshot",
                            text.chars().take(200).collect::<String>()
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
        self.state.position.advance(group.gtid);
        let done = Commit {
            position: self.state.position.clone(),
            ts_ms: i64::from(header.timestamp()) * 1000,
            seen_ms: now_ms(),
        };
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
            for e in group.events {
                self.ctx.emitter.send(SourceMessage::Event(e)).await?;
            }
            self.pending = None;
            return self.send_commit(done).await;
        }
        // Nothing of ours in it: the position moves, lazily.
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
