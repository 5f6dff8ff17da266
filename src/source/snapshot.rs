//! The initial (or repeated) copy of the table: every row as an `r` event, consistent with one
//! binlog position, followed by a [`Commit`] at that position so streaming continues exactly
//! where the snapshot's view of the table ends.
//!
//! No global lock: `START TRANSACTION WITH CONSISTENT SNAPSHOT` gives an InnoDB read view and
//! MariaDB reports the binlog file and offset that view corresponds to
//! (`binlog_snapshot_file`/`binlog_snapshot_position`), which `BINLOG_GTID_POS()` turns into a
//! GTID position. Writers are never blocked. Rows are streamed from the server, never held in
//! memory, and read with the binary protocol in UTC so values match the binlog's exactly.

use std::io::IsTerminal;

use futures_util::{FutureExt, StreamExt};
use mysql_async::prelude::Queryable;

use crate::config::TableRef;
use crate::event::{ChangeEvent, Commit, Op, Row, Source, SourceMessage, now_ms};
use crate::position::GtidPosition;

use super::columns::{self, ColumnInfo};
use super::connection::{Endpoint, timed};
use super::emitter::{Emitter, Interrupt};
use super::error::{SourceError, is_transient_mysql};
use super::preflight::quote_ident;
use super::values::sql_to_json;

/// Copy `table`, send its rows and the commit at the snapshot's position; return that position.
pub(crate) async fn snapshot(
    endpoint: &Endpoint,
    table: &TableRef,
    emitter: &Emitter,
) -> Result<GtidPosition, Interrupt> {
    let fail = |doing: &'static str| {
        move |e: mysql_async::Error| -> Interrupt {
            if is_transient_mysql(&e) {
                SourceError::Connection {
                    doing,
                    table: table.to_string(),
                    position: String::new(),
                    cause: Box::new(e),
                }
                .into()
            } else {
                SourceError::Server {
                    doing,
                    table: table.to_string(),
                    position: String::new(),
                    cause: Box::new(e),
                }
                .into()
            }
        }
    };
    let mut conn = endpoint.connect().await?;
    emitter.status().connected(&endpoint.url);
    // Every query (and every row of the table's read) waits at most this long.
    let limit = endpoint.read_timeout;
    for sql in [
        // TIMESTAMP columns in UTC, as the binlog stores them.
        "SET SESSION time_zone = '+00:00'",
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT",
    ] {
        timed(limit, conn.query_drop(sql))
            .await
            .map_err(fail("starting the snapshot"))?;
    }
    let status: Vec<(String, String)> = timed(
        limit,
        conn.query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'"),
    )
    .await
    .map_err(fail("reading the snapshot's binlog position"))?;
    let find = |name: &str| {
        status
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let (Some(file), Some(offset)) = (
        find("binlog_snapshot_file"),
        find("binlog_snapshot_position").and_then(|p| p.parse::<u64>().ok()),
    ) else {
        return Err(SourceError::Unsupported(
            "the server reports no binlog_snapshot_file/binlog_snapshot_position (is log_bin on?)"
                .into(),
        )
        .into());
    };
    let gtid: Option<Option<String>> = timed(
        limit,
        conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.as_str(), offset)),
    )
    .await
    .map_err(fail("reading the snapshot's GTID position"))?;
    let position: GtidPosition = match gtid.flatten() {
        Some(text) => text.parse().map_err(|e| {
            Interrupt::Failed(SourceError::Unsupported(format!(
                "BINLOG_GTID_POS returned {text:?}: {e}"
            )))
        })?,
        None => {
            return Err(SourceError::Unsupported(format!(
                "BINLOG_GTID_POS('{file}', {offset}) returned NULL"
            ))
            .into());
        }
    };
    let server_id: u32 = timed(limit, conn.query_first::<u32, _>("SELECT @@server_id"))
        .await
        .map_err(fail("reading server_id"))?
        .unwrap_or(0);
    let columns = timed(
        limit,
        columns::load_schema(&mut conn, &table.db, &table.table),
    )
    .await
    .map_err(fail("reading the table's columns"))?;
    if columns.is_empty() {
        return Err(SourceError::NoTable {
            table: table.to_string(),
            user: endpoint.user.clone(),
        }
        .into());
    }
    let estimate: u64 = timed(
        limit,
        conn.exec_first::<Option<u64>, _, _>(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (table.db.as_str(), table.table.as_str()),
        ),
    )
    .await
        .map_err(fail("estimating the table's size"))?
        .flatten()
        .unwrap_or(0);
    tracing::info!(%table, %position, file = %file, pos = offset, estimated_rows = estimate, "snapshot started");

    let started_ms = now_ms();
    let source = |snapshot: &str| Source {
        connector: "vecsync".into(),
        db: table.db.clone(),
        table: table.table.clone(),
        server_id,
        gtid: None,
        file: file.clone(),
        pos: offset,
        row: 0,
        ts_ms: started_ms,
        snapshot: snapshot.into(),
    };
    let progress = progress_bar(estimate);
    let select = format!(
        "SELECT {} FROM {}.{}",
        columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", "),
        quote_ident(&table.db),
        quote_ident(&table.table)
    );
    let mut count = 0u64;
    {
        let mut result = timed(limit, conn.exec_iter(select, ()))
            .await
            .map_err(fail("reading the table"))?;
        let mut rows = timed(limit, result.stream::<mysql_async::Row>())
            .await
            .map_err(fail("reading the table"))?;
        // One row of look-ahead, so the last row can say so.
        let mut held: Option<Row> = None;
        if let Some(stream) = rows.as_mut() {
            while let Some(row) = timed(limit, stream.next().map(Ok))
                .await
                .map_err(fail("reading the table"))?
            {
                let row = row.map_err(fail("reading the table"))?;
                let json = to_row(&columns, row).map_err(|e| {
                    Interrupt::Failed(SourceError::Unsupported(format!(
                        "snapshot of {table}: {e}"
                    )))
                })?;
                if let Some(prev) = held.replace(json) {
                    emitter.send(read_event(prev, source("true"))).await?;
                    count += 1;
                    if let Some(p) = &progress {
                        p.inc(1);
                    }
                }
            }
        }
        if let Some(last) = held {
            emitter.send(read_event(last, source("last"))).await?;
            count += 1;
        }
    }
    timed(limit, conn.query_drop("COMMIT"))
        .await
        .map_err(fail("ending the snapshot"))?;
    let _ = conn.disconnect().await;
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    emitter
        .send(SourceMessage::Commit(Commit {
            position: position.clone(),
            ts_ms: started_ms,
            seen_ms: now_ms(),
        }))
        .await?;
    tracing::info!(%table, rows = count, %position, "snapshot done");
    Ok(position)
}

fn read_event(after: Row, source: Source) -> SourceMessage {
    SourceMessage::Event(ChangeEvent {
        before: None,
        after: Some(after),
        source,
        op: Op::Read,
        ts_ms: now_ms(),
    })
}

fn to_row(columns: &[ColumnInfo], row: mysql_async::Row) -> Result<Row, super::rows::RowError> {
    let values = row.unwrap_raw();
    let mut out = Row::new();
    for (column, value) in columns.iter().zip(values) {
        let value = value.unwrap_or(mysql_async::Value::NULL);
        out.insert(column.name.clone(), sql_to_json(value, column)?);
    }
    Ok(out)
}

/// A progress bar on stderr when it is a terminal; nothing otherwise (logs say it instead).
fn progress_bar(estimate: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(estimate);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "snapshot {bar:40} {pos}/~{len} rows {per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}
