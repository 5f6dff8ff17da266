//! [`TableReader`]: reads the watched table in key order, one chunk per short consistent read,
//! each at a known GTID position; and answers "which of these values does no row have" the same
//! way. The snapshot's merge and `vecsync verify` both read through it.
//!
//! A read is `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`, then the session's
//! `binlog_snapshot_file`/`binlog_snapshot_position` (the binlog offset the read view corresponds
//! to), turned into a GTID position by `BINLOG_GTID_POS()`. No lock, no write, no table of its
//! own: the user needs SELECT on the table (and nothing else for reading), and a read-only
//! replica works as well as a primary. Values are read with the binary protocol in UTC and
//! decoded by [`values`](super::super::values), so a row reads as it would from the binlog.
//!
//! # Error handling
//! Any error drops the connection (the next read reconnects) and, for MariaDB's 1412 "Table
//! definition has changed" (an `ALTER TABLE` committed after the read view was taken), the
//! cached column list, so the next read sees the new columns. Callers decide whether to retry;
//! [`TableReader::next_chunk`] retries 1412 itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::Value as Json;

use crate::config::TableRef;
use crate::event::Row;
use crate::position::GtidPosition;

use super::super::columns::{self, ColumnInfo};
use super::super::connection::Endpoint;
use super::super::error::SourceError;
use super::super::preflight::quote_ident;
use super::super::replicator::SourceConfig;
use super::super::values::sql_to_json;
use super::absence;
use super::keys::{self, ChunkKey, IndexPart, KeyChoice, NumericSizes};

/// MariaDB's ER_TABLE_DEF_CHANGED: "Table definition has changed, please retry transaction".
const TABLE_DEF_CHANGED: u16 = 1412;

/// How often [`TableReader::next_chunk`] re-reads after a concurrent ALTER TABLE.
const TABLE_CHANGED_RETRIES: u32 = 5;

/// Where a consistent read stands in the binlog.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadPoint {
    /// The GTID position the read view corresponds to.
    pub position: GtidPosition,
    /// `binlog_snapshot_file` and `binlog_snapshot_position`.
    pub file: String,
    pub offset: u64,
    /// `@@server_id` of the server read from.
    pub server_id: u32,
}

/// Rows read in one consistent read.
#[derive(Debug, Clone, PartialEq)]
pub struct TableChunk {
    /// Rows in key order, as JSON row images (the binlog's form).
    pub rows: Vec<Row>,
    pub point: ReadPoint,
    /// The key of the last row, to read after next; `None` when no row was read.
    pub last_key: Option<Vec<Json>>,
    /// No row follows this chunk (at its position).
    pub last: bool,
}

/// The table's columns and chunking key, as read from information_schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableSchema {
    pub columns: Vec<ColumnInfo>,
    pub key: KeyChoice,
}

/// Reads the watched table at known positions. See the [module](self) documentation.
pub struct TableReader {
    endpoint: Endpoint,
    table: TableRef,
    /// Seconds a read waits for a metadata lock (an ALTER in progress) before failing.
    lock_wait: Duration,
    conn: Option<mysql_async::Conn>,
    server_id: u32,
    schema: Option<Arc<TableSchema>>,
    /// The columns of the last `SELECT *`, as the server described them, for `schema`.
    shapes: Option<Vec<ColumnShape>>,
}

impl std::fmt::Debug for TableReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableReader")
            .field("endpoint", &self.endpoint)
            .field("table", &self.table)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl TableReader {
    /// Connect to the server of `config` and read the table's columns and key.
    pub async fn connect(config: &SourceConfig) -> Result<Self, SourceError> {
        let endpoint = Endpoint::new(
            &config.url,
            config.password.as_ref(),
            config.ssl_ca.as_deref(),
        )?;
        let mut reader = Self::new(endpoint, config.table.clone(), Duration::from_secs(30));
        reader.schema().await?;
        Ok(reader)
    }

    /// A reader that connects on its first read.
    pub(crate) fn new(endpoint: Endpoint, table: TableRef, lock_wait: Duration) -> Self {
        Self {
            endpoint,
            table,
            lock_wait,
            conn: None,
            server_id: 0,
            schema: None,
            shapes: None,
        }
    }

    /// The chunking key's columns, `None` when the table has no usable key (see
    /// [`no_key_reason`](Self::no_key_reason)). Known once a read (or `connect`) loaded the schema.
    pub fn key_columns(&self) -> Option<Vec<String>> {
        match self.schema.as_deref().map(|s| &s.key) {
            Some(KeyChoice::Key(k)) => Some(k.names()),
            _ => None,
        }
    }

    /// Why the table cannot be read in chunks, when it cannot.
    pub fn no_key_reason(&self) -> Option<String> {
        match self.schema.as_deref().map(|s| &s.key) {
            Some(KeyChoice::None(why)) => Some(why.clone()),
            _ => None,
        }
    }

    /// information_schema's estimate of the table's rows (InnoDB's is approximate).
    pub async fn estimated_rows(&mut self) -> Result<u64, SourceError> {
        let (db, table) = (self.table.db.clone(), self.table.table.clone());
        let conn = self.conn().await?;
        let estimate = conn
            .exec_first::<Option<u64>, _, _>(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (db, table),
            )
            .await;
        Ok(self
            .check(estimate, "estimating the table's size")?
            .flatten()
            .unwrap_or(0))
    }

    /// Read up to `rows` rows after `after_key` (from the start when `None`) in one consistent
    /// read. A concurrent ALTER TABLE (error 1412) is retried with the new column list.
    pub async fn next_chunk(
        &mut self,
        after_key: Option<&[Json]>,
        rows: usize,
    ) -> Result<TableChunk, SourceError> {
        let mut changed = 0;
        loop {
            let point = self.begin().await?;
            let result = self.chunk_in_read(after_key, rows).await;
            let result = match result {
                Ok(rows) => self.end().await.map(|()| rows),
                Err(e) => Err(e),
            };
            match result {
                Ok((rows, last_key, last)) => {
                    return Ok(TableChunk {
                        rows,
                        point,
                        last_key,
                        last,
                    });
                }
                Err(e) if is_table_changed(&e) && changed < TABLE_CHANGED_RETRIES => {
                    changed += 1;
                    tracing::info!(table = %self.table, "the table changed during a chunk read; reading it again");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Which of `values` some row has in `column`, in one consistent read, and its position.
    /// Values match exactly (as the row's JSON has them, byte for byte), not by collation.
    pub async fn present(
        &mut self,
        column: &str,
        values: &[String],
    ) -> Result<(Vec<String>, GtidPosition), SourceError> {
        let point = self.begin().await?;
        let present = self.present_in_read(column, values).await?;
        self.end().await?;
        Ok((present, point.position))
    }

    /// The keyset query a chunk read runs (`after`: with the "after the key" condition), for
    /// EXPLAIN. `None` when the table has no chunking key.
    pub async fn chunk_sql(
        &mut self,
        after: bool,
        rows: usize,
    ) -> Result<Option<String>, SourceError> {
        let schema = self.schema().await?;
        Ok(match &schema.key {
            KeyChoice::Key(key) => Some(self.select_sql(key, after, rows)),
            KeyChoice::None(_) => None,
        })
    }

    /// Start a consistent read and return its position. [`chunk_in_read`](Self::chunk_in_read)
    /// and [`present_in_read`](Self::present_in_read) then read at that position, as often as
    /// needed, until [`end`](Self::end). [`next_chunk`](Self::next_chunk) and
    /// [`present`](Self::present) do all three steps.
    pub async fn begin(&mut self) -> Result<ReadPoint, SourceError> {
        let conn = self.conn().await?;
        let started = conn
            .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await;
        self.check(started, "starting a consistent read")?;
        let conn = self.conn().await?;
        let status = conn
            .query::<(String, String), _>("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            .await;
        let status = self.check(status, "reading the consistent read's binlog position")?;
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
            self.conn = None;
            return Err(SourceError::Unsupported(
                "the server reports no binlog_snapshot_file/binlog_snapshot_position (is log_bin on?)"
                    .into(),
            ));
        };
        let conn = self.conn().await?;
        let gtid = conn
            .exec_first::<Option<String>, _, _>(
                "SELECT BINLOG_GTID_POS(?, ?)",
                (file.as_str(), offset),
            )
            .await;
        let gtid = self.check(gtid, "reading the consistent read's GTID position")?;
        let position: GtidPosition = match gtid.flatten() {
            Some(text) => text.parse().map_err(|e| {
                SourceError::Unsupported(format!("BINLOG_GTID_POS returned {text:?}: {e}"))
            })?,
            None => {
                self.conn = None;
                return Err(SourceError::Unsupported(format!(
                    "BINLOG_GTID_POS('{file}', {offset}) returned NULL"
                )));
            }
        };
        Ok(ReadPoint {
            position,
            file,
            offset,
            server_id: self.server_id,
        })
    }

    /// End the consistent read.
    pub async fn end(&mut self) -> Result<(), SourceError> {
        let conn = self.conn().await?;
        let done = conn.query_drop("COMMIT").await;
        self.check(done, "ending a consistent read")
    }

    /// Inside a consistent read: up to `rows` rows after `after` (from the start when `None`),
    /// the last row's key, and whether no row follows. A concurrent `ALTER TABLE` fails it with
    /// MariaDB's 1412; the next read uses the new columns.
    pub async fn chunk_in_read(
        &mut self,
        after: Option<&[Json]>,
        rows: usize,
    ) -> Result<(Vec<Row>, Option<Vec<Json>>, bool), SourceError> {
        let rows = rows.max(1);
        let schema = self.schema().await?;
        let KeyChoice::Key(key) = &schema.key else {
            return Err(SourceError::Unsupported(format!(
                "{} cannot be read in chunks: {}",
                self.table,
                self.no_key_reason().unwrap_or_default()
            )));
        };
        let params = match after {
            Some(after) => key.after_params(after).map_err(|e| {
                SourceError::Unsupported(format!(
                    "the snapshot's last key does not fit {}'s key ({e})",
                    self.table
                ))
            })?,
            None => Vec::new(),
        };
        let sql = self.select_sql(key, after.is_some(), rows + 1);
        let raw = self.select(&sql, params).await?;
        let schema = self.schema_for(&raw.shapes).await?;
        let KeyChoice::Key(key) = &schema.key else {
            return Err(table_changed(&self.table, "its chunking key went away"));
        };
        let mut out = Vec::with_capacity(raw.rows.len().min(rows));
        let mut last_key = None;
        let more = raw.rows.len() > rows;
        for values in raw.rows.into_iter().take(rows) {
            last_key = Some(key.encode(&values).map_err(|e| {
                SourceError::Unsupported(format!("snapshot of {}: {e}", self.table))
            })?);
            out.push(to_row(&self.table, &schema.columns, values)?);
        }
        Ok((out, last_key, !more))
    }

    /// Inside a consistent read: which of `values` occur in `column` (exactly).
    pub async fn present_in_read(
        &mut self,
        column: &str,
        values: &[String],
    ) -> Result<Vec<String>, SourceError> {
        // Fail closed: "no row has it" for every value would delete the whole index.
        let info = self.column(column, "absence check").await?;
        let mut found: HashSet<String> = HashSet::new();
        for batch in absence::batches(&info, values) {
            if batch.is_empty() {
                continue;
            }
            let sql = self.select_in(&quote_ident(&info.name), &info, batch.len());
            let raw = self.select(&sql, batch).await?;
            for mut values in raw.rows {
                let value = values.pop().flatten().unwrap_or(mysql_async::Value::NULL);
                let json = sql_to_json(value, &info).map_err(|e| {
                    SourceError::Unsupported(format!("absence check on {}: {e}", self.table))
                })?;
                found.insert(absence::as_text(&json));
            }
        }
        Ok(values
            .iter()
            .filter(|v| found.contains(*v))
            .cloned()
            .collect())
    }

    /// Inside a consistent read: the rows whose `column` is one of `values` (exactly, as
    /// [`present_in_read`](Self::present_in_read) compares), in no particular order. `vecsync
    /// verify` re-reads the rows it suspects of drift with it.
    pub async fn rows_in_read(
        &mut self,
        column: &str,
        values: &[String],
    ) -> Result<Vec<Row>, SourceError> {
        let info = self.column(column, "reading rows by column").await?;
        let wanted: HashSet<&str> = values.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for batch in absence::batches(&info, values) {
            if batch.is_empty() {
                continue;
            }
            let sql = self.select_in("*", &info, batch.len());
            let raw = self.select(&sql, batch).await?;
            let schema = self.schema_for(&raw.shapes).await?;
            for values in raw.rows {
                let row = to_row(&self.table, &schema.columns, values)?;
                // `IN` matches by collation; only the exact value is the asked-for row.
                let exact = row
                    .get(&info.name)
                    .is_some_and(|v| wanted.contains(absence::as_text(v).as_str()));
                if exact {
                    out.push(row);
                }
            }
        }
        Ok(out)
    }

    /// The table's column `name` (case-insensitively, as MariaDB compares names); a column the
    /// table does not have is an error naming `doing`.
    async fn column(&mut self, name: &str, doing: &str) -> Result<ColumnInfo, SourceError> {
        let schema = self.schema().await?;
        schema
            .columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .cloned()
            .ok_or_else(|| {
                SourceError::Unsupported(format!(
                    "{doing} on column `{name}`, which {} does not have",
                    self.table
                ))
            })
    }

    /// `SELECT what FROM the table WHERE column IN (?, ...)` with `n` placeholders.
    fn select_in(&self, what: &str, column: &ColumnInfo, n: usize) -> String {
        format!(
            "SELECT {what} FROM {db}.{table} WHERE {col} IN ({marks})",
            col = quote_ident(&column.name),
            db = quote_ident(&self.table.db),
            table = quote_ident(&self.table.table),
            marks = vec!["?"; n].join(", ")
        )
    }

    /// Inside a consistent read: every row, in no particular order (the keyless fallback).
    /// The rows are streamed from the server; `net_write_timeout` is raised so a slow consumer
    /// does not get the connection dropped.
    pub(crate) async fn scan_all(&mut self) -> Result<TableScan<'_>, SourceError> {
        let schema = self.schema().await?;
        let conn = self.conn().await?;
        let raised = conn
            .query_drop("SET SESSION net_write_timeout = 86400")
            .await;
        self.check(raised, "preparing the table read")?;
        let sql = format!(
            "SELECT * FROM {}.{}",
            quote_ident(&self.table.db),
            quote_ident(&self.table.table)
        );
        let table = self.table.clone();
        let Some(conn) = self.conn.as_mut() else {
            return Err(lost(&table));
        };
        // On an error the connection stays (the borrow checker cannot release it here); the
        // next read on it fails and drops it.
        let result = conn
            .exec_iter(sql, ())
            .await
            .map_err(|e| mysql_error("reading the table", &table, e))?;
        Ok(TableScan {
            result,
            schema,
            table,
            checked: false,
        })
    }

    /// The table's columns and key, loaded on first use and after a change.
    pub(crate) async fn schema(&mut self) -> Result<Arc<TableSchema>, SourceError> {
        if let Some(s) = &self.schema {
            return Ok(s.clone());
        }
        let (db, table) = (self.table.db.clone(), self.table.table.clone());
        let conn = self.conn().await?;
        let loaded = load_schema(conn, &db, &table).await;
        let loaded = self.check(loaded, "reading the table's columns and keys")?;
        if loaded.columns.is_empty() {
            return Err(SourceError::NoTable {
                table: self.table.to_string(),
                user: self.endpoint.user.clone(),
            });
        }
        let loaded = Arc::new(loaded);
        self.schema = Some(loaded.clone());
        Ok(loaded)
    }

    /// The schema matching the columns a `SELECT *` returned: the cached one, else a fresh one
    /// (the table was altered before this read began). Names alone would miss an ALTER that
    /// keeps them (`DATETIME(0)` to `DATETIME(3)`), so the result's column metadata is compared
    /// with the one seen last.
    async fn schema_for(
        &mut self,
        shapes: &[ColumnShape],
    ) -> Result<Arc<TableSchema>, SourceError> {
        let fits = |s: &TableSchema| {
            s.columns.len() == shapes.len()
                && s.columns.iter().zip(shapes).all(|(c, n)| c.name == n.name)
        };
        let cached = self.schema().await?;
        if fits(&cached) && self.shapes.as_deref().is_none_or(|seen| seen == shapes) {
            self.shapes = Some(shapes.to_vec());
            return Ok(cached);
        }
        tracing::info!(table = %self.table, "the table's columns changed; reading them again");
        self.schema = None;
        let fresh = self.schema().await?;
        if fits(&fresh) {
            self.shapes = Some(shapes.to_vec());
            Ok(fresh)
        } else {
            self.schema = None;
            self.shapes = None;
            Err(table_changed(
                &self.table,
                "its columns changed during the read",
            ))
        }
    }

    fn select_sql(&self, key: &ChunkKey, after: bool, limit: usize) -> String {
        let index = if key.index == "PRIMARY" {
            "PRIMARY".to_owned()
        } else {
            quote_ident(&key.index)
        };
        let filter = if after {
            format!(" WHERE {}", key.after_clause())
        } else {
            String::new()
        };
        format!(
            "SELECT * FROM {}.{} FORCE INDEX ({index}){filter} ORDER BY {} LIMIT {limit}",
            quote_ident(&self.table.db),
            quote_ident(&self.table.table),
            key.order_by()
        )
    }

    /// Run a `SELECT` with the binary protocol; its column names and raw rows.
    async fn select(
        &mut self,
        sql: &str,
        params: Vec<mysql_async::Value>,
    ) -> Result<RawRows, SourceError> {
        let conn = self.conn().await?;
        let result = async {
            let result = conn.exec_iter(sql, params).await?;
            let shapes: Vec<ColumnShape> =
                result.columns_ref().iter().map(ColumnShape::of).collect();
            let rows: Vec<mysql_async::Row> = result.collect_and_drop().await?;
            Ok::<_, mysql_async::Error>(RawRows {
                shapes,
                rows: rows.into_iter().map(mysql_async::Row::unwrap_raw).collect(),
            })
        }
        .await;
        self.check(result, "reading the table")
    }

    /// The open connection, connecting (and setting the session up) when there is none.
    async fn conn(&mut self) -> Result<&mut mysql_async::Conn, SourceError> {
        if self.conn.is_none() {
            let mut conn = self.endpoint.connect().await?;
            let setup = async {
                for sql in [
                    // TIMESTAMP columns in UTC, as the binlog stores them.
                    "SET SESSION time_zone = '+00:00'".to_owned(),
                    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ".to_owned(),
                    // A read waiting behind an ALTER's metadata lock gives up instead of
                    // holding the stream.
                    format!(
                        "SET SESSION lock_wait_timeout = {}",
                        self.lock_wait.as_secs().max(1)
                    ),
                ] {
                    conn.query_drop(sql).await?;
                }
                conn.query_first::<u32, _>("SELECT @@server_id").await
            }
            .await;
            match setup {
                Ok(id) => self.server_id = id.unwrap_or(0),
                Err(e) => {
                    return Err(mysql_error(
                        "setting up the read connection",
                        &self.table,
                        e,
                    ));
                }
            }
            self.conn = Some(conn);
        }
        let table = self.table.clone();
        self.conn.as_mut().ok_or_else(|| lost(&table))
    }

    /// Classify a MariaDB result; any error drops the connection (and after 1412 the schema).
    fn check<T>(
        &mut self,
        result: Result<T, mysql_async::Error>,
        doing: &'static str,
    ) -> Result<T, SourceError> {
        result.map_err(|e| {
            self.conn = None;
            if matches!(&e, mysql_async::Error::Server(s) if s.code == TABLE_DEF_CHANGED) {
                self.schema = None;
                self.shapes = None;
            }
            mysql_error(doing, &self.table, e)
        })
    }
}

/// A `SELECT`'s columns and rows of raw values.
struct RawRows {
    shapes: Vec<ColumnShape>,
    rows: Vec<Vec<Option<mysql_async::Value>>>,
}

/// What a result set says about a column: enough to notice that the table changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ColumnShape {
    name: String,
    ty: u8,
    flags: u16,
    decimals: u8,
    charset: u16,
    length: u32,
}

impl ColumnShape {
    fn of(c: &mysql_async::Column) -> Self {
        Self {
            name: c.name_str().into_owned(),
            ty: c.column_type() as u8,
            flags: c.flags().bits(),
            decimals: c.decimals(),
            charset: c.character_set(),
            length: c.column_length(),
        }
    }
}

/// A streamed read of the whole table (the keyless fallback).
pub(crate) struct TableScan<'r> {
    result: mysql_async::QueryResult<'r, 'static, mysql_async::BinaryProtocol>,
    schema: Arc<TableSchema>,
    table: TableRef,
    checked: bool,
}

impl TableScan<'_> {
    /// The next row, `None` at the end.
    pub(crate) async fn next_row(&mut self) -> Result<Option<Row>, SourceError> {
        if !self.checked {
            self.checked = true;
            let names: Vec<String> = self
                .result
                .columns_ref()
                .iter()
                .map(|c| c.name_str().into_owned())
                .collect();
            let fits = self.schema.columns.len() == names.len()
                && self
                    .schema
                    .columns
                    .iter()
                    .zip(&names)
                    .all(|(c, n)| &c.name == n);
            if !fits {
                return Err(table_changed(&self.table, "its columns changed"));
            }
        }
        let row = self
            .result
            .next()
            .await
            .map_err(|e| mysql_error("reading the table", &self.table, e))?;
        match row {
            None => Ok(None),
            Some(row) => to_row(&self.table, &self.schema.columns, row.unwrap_raw()).map(Some),
        }
    }
}

fn to_row(
    table: &TableRef,
    columns: &[ColumnInfo],
    values: Vec<Option<mysql_async::Value>>,
) -> Result<Row, SourceError> {
    let mut out = Row::new();
    for (column, value) in columns.iter().zip(values) {
        let value = value.unwrap_or(mysql_async::Value::NULL);
        let json = sql_to_json(value, column)
            .map_err(|e| SourceError::Unsupported(format!("snapshot of {table}: {e}")))?;
        out.insert(column.name.clone(), json);
    }
    Ok(out)
}

/// Columns (information_schema), indexes (`SHOW INDEX`, in definition order) and the key.
async fn load_schema(
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
) -> Result<TableSchema, mysql_async::Error> {
    let columns = columns::load_schema(conn, db, table).await?;
    if columns.is_empty() {
        return Ok(TableSchema {
            columns,
            key: KeyChoice::None("the table does not exist".into()),
        });
    }
    let sizes: Vec<(String, Option<u64>, Option<u64>)> = conn
        .exec(
            "SELECT COLUMN_NAME, NUMERIC_PRECISION, NUMERIC_SCALE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND DATA_TYPE IN ('decimal', 'numeric')",
            (db, table),
        )
        .await?;
    let sizes: NumericSizes = sizes
        .into_iter()
        .map(|(name, p, s)| {
            (
                name,
                (
                    u32::try_from(p.unwrap_or(65)).unwrap_or(65),
                    u32::try_from(s.unwrap_or(0)).unwrap_or(0),
                ),
            )
        })
        .collect();
    let rows: Vec<mysql_async::Row> = conn
        .query(format!(
            "SHOW INDEX FROM {}.{}",
            quote_ident(db),
            quote_ident(table)
        ))
        .await?;
    let text = |row: &mysql_async::Row, name: &str| -> String {
        row.get_opt::<Option<String>, _>(name)
            .and_then(Result::ok)
            .flatten()
            .unwrap_or_default()
    };
    let parts: Vec<IndexPart> = rows
        .iter()
        .map(|row| IndexPart {
            index: text(row, "Key_name"),
            seq: text(row, "Seq_in_index").parse().unwrap_or(0),
            column: text(row, "Column_name"),
            unique: text(row, "Non_unique") == "0",
            nullable: text(row, "Null").eq_ignore_ascii_case("YES"),
            prefix: !text(row, "Sub_part").is_empty(),
            index_type: text(row, "Index_type"),
            ignored: text(row, "Ignored").eq_ignore_ascii_case("YES"),
        })
        .collect();
    let key = keys::choose(&parts, &columns, &sizes);
    Ok(TableSchema { columns, key })
}

fn mysql_error(doing: &'static str, table: &TableRef, e: mysql_async::Error) -> SourceError {
    SourceError::from_mysql(doing, table, e)
}

fn lost(table: &TableRef) -> SourceError {
    SourceError::Connection {
        doing: "reading the table",
        table: table.to_string(),
        position: String::new(),
        cause: Box::new(mysql_async::Error::Driver(
            mysql_async::DriverError::ConnectionClosed,
        )),
    }
}

/// The table changed under a read in a way the read itself noticed (not error 1412).
fn table_changed(table: &TableRef, what: &str) -> SourceError {
    SourceError::Server {
        doing: "reading the table",
        table: table.to_string(),
        position: String::new(),
        cause: Box::new(mysql_async::Error::Server(mysql_async::ServerError {
            code: TABLE_DEF_CHANGED,
            message: format!("Table definition has changed ({what})"),
            state: "HY000".into(),
        })),
    }
}

/// True for MariaDB's 1412 (a concurrent ALTER TABLE): read again, with the new columns.
pub(crate) fn is_table_changed(e: &SourceError) -> bool {
    matches!(e, SourceError::Server { cause, .. }
        if matches!(cause.as_ref(), mysql_async::Error::Server(s) if s.code == TABLE_DEF_CHANGED))
}
