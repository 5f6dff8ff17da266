//! Checks made before streaming, so a misconfigured server is refused with a message naming the
//! setting, its value and the fix, instead of failing later in a confusing way (or, worse,
//! replicating partial rows).
//!
//! Required: MariaDB, `log_bin=ON`, `binlog_format=ROW`, `binlog_row_image=FULL`, the
//! `REPLICATION SLAVE` privilege and `SELECT` on the table, and on a server that is itself a
//! replica `log_slave_updates=ON` (without it the changes it replicates never reach its binlog).
//! Warnings: `binlog_row_metadata` other than FULL (column names then come from
//! information_schema), and foreign keys whose `ON DELETE`/`ON UPDATE CASCADE` or `SET NULL`
//! change the table's rows inside InnoDB, where the binlog never shows them.
//!
//! Every query has the connection's read timeout.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::config::TableRef;

use super::connection::timed;
use super::error::SourceError;

/// What the checks found out, for the log and the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preflight {
    /// `@@version`, e.g. `10.11.19-MariaDB-0+deb12u1-log`.
    pub server_version: String,
    /// `@@server_id` of the source server.
    pub server_id: u32,
    /// `binlog_row_metadata=FULL`: events describe their own columns.
    pub row_metadata_full: bool,
    /// Things that work but deserve the operator's attention.
    pub warnings: Vec<String>,
}

fn setting(setting: &'static str, value: &str, why: &'static str, fix: String) -> SourceError {
    SourceError::Setting {
        setting,
        value: value.to_owned(),
        why,
        fix,
    }
}

fn server_error(doing: &'static str, table: &TableRef, e: mysql_async::Error) -> SourceError {
    SourceError::from_mysql(doing, table, e)
}

/// Run every check on `conn` for `table`, each query waiting at most `limit`.
pub(crate) async fn check(
    conn: &mut mysql_async::Conn,
    table: &TableRef,
    limit: Duration,
) -> Result<Preflight, SourceError> {
    let row: Option<(String, String, String, String, String, String)> = timed(
        limit,
        conn.query_first(
            "SELECT @@version, CAST(@@log_bin AS CHAR), @@binlog_format, @@binlog_row_image, \
             CAST(@@server_id AS CHAR), CURRENT_USER()",
        ),
    )
    .await
    .map_err(|e| server_error("reading server settings", table, e))?;
    let Some((version, log_bin, format, row_image, server_id, current_user)) = row else {
        return Err(SourceError::Unsupported(
            "the server returned no settings".into(),
        ));
    };
    if !version.contains("MariaDB") {
        return Err(SourceError::Unsupported(format!(
            "vecsync streams with MariaDB's GTID replication protocol; the server reports version \
             {version}, which is not MariaDB"
        )));
    }
    let cnf = "under [mysqld] in the server's configuration (see mariadb-conf/custom.cnf)";
    if log_bin != "1" && !log_bin.eq_ignore_ascii_case("ON") {
        return Err(setting(
            "log_bin",
            "OFF",
            "vecsync reads row changes from the binary log",
            format!("set log-bin=mysql-bin and a server-id {cnf}, then restart MariaDB"),
        ));
    }
    if !format.eq_ignore_ascii_case("ROW") {
        return Err(setting(
            "binlog_format",
            &format,
            "only ROW events carry the changed rows (STATEMENT and MIXED log SQL text)",
            format!(
                "SET GLOBAL binlog_format=ROW and set binlog_format=ROW {cnf}; sessions opened \
                 before the change keep the old format until they reconnect"
            ),
        ));
    }
    if !row_image.eq_ignore_ascii_case("FULL") {
        return Err(setting(
            "binlog_row_image",
            &row_image,
            "updates and deletes must carry every column for complete change events",
            format!("SET GLOBAL binlog_row_image=FULL and set binlog_row_image=FULL {cnf}"),
        ));
    }

    let mut warnings = Vec::new();
    // binlog_row_metadata exists since MariaDB 10.5; older servers behave as NO_LOG.
    let row_metadata: String = timed(
        limit,
        conn.query_first::<String, _>("SELECT @@binlog_row_metadata"),
    )
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| "NO_LOG".to_owned());
    let row_metadata_full = row_metadata.eq_ignore_ascii_case("FULL");
    if !row_metadata_full {
        warnings.push(format!(
            "binlog_row_metadata is {row_metadata}, not FULL: column names come from \
             information_schema, which describes the table as it is now, so events written \
             before a later ALTER TABLE may be misread. Set binlog_row_metadata=FULL {cnf}"
        ));
    }

    let grantee = grantee_sql(&current_user);
    replica_settings(conn, table, limit, &mut warnings, cnf).await?;

    let grants: Vec<String> = timed(limit, conn.query("SHOW GRANTS"))
        .await
        .map_err(|e| server_error("reading the user's privileges", table, e))?;
    match has_replication_slave(&grants) {
        Some(true) => {}
        Some(false) => {
            return Err(SourceError::Privilege {
                user: current_user,
                privilege: "REPLICATION SLAVE",
                why: "streaming the binlog needs",
                fix: format!("GRANT REPLICATION SLAVE ON *.* TO {grantee}"),
            });
        }
        None => warnings.push(format!(
            "could not confirm that {current_user} has REPLICATION SLAVE (it may come through a \
             role); streaming will fail if it does not"
        )),
    }

    let probe = format!(
        "SELECT 1 FROM {}.{} LIMIT 0",
        quote_ident(&table.db),
        quote_ident(&table.table)
    );
    if let Err(e) = timed(limit, conn.query_drop(probe)).await {
        return Err(match &e {
            mysql_async::Error::Server(s) if matches!(s.code, 1142 | 1143 | 1044) => {
                SourceError::Privilege {
                    user: current_user,
                    privilege: "SELECT",
                    why: "the snapshot and the column metadata need on the table",
                    fix: format!(
                        "GRANT SELECT ON {}.{} TO {grantee}",
                        quote_ident(&table.db),
                        quote_ident(&table.table)
                    ),
                }
            }
            mysql_async::Error::Server(s) if matches!(s.code, 1146 | 1049) => {
                SourceError::NoTable {
                    table: table.to_string(),
                    user: current_user,
                }
            }
            _ => server_error("checking access to the table", table, e),
        });
    }

    warnings.extend(cascading_foreign_keys(conn, table, limit).await?);

    Ok(Preflight {
        server_version: version,
        server_id: server_id.parse().unwrap_or(0),
        row_metadata_full,
        warnings,
    })
}

/// A replica must write what it replicates to its own binlog, or vecsync never sees it. Whether
/// the server replicates is read from `SHOW ALL SLAVES STATUS` (needs SLAVE MONITOR, or REPLICA
/// MONITOR); without that privilege a non-empty `@@gtid_slave_pos` (the server replicated
/// something once) with `log_slave_updates=OFF` is only a warning.
async fn replica_settings(
    conn: &mut mysql_async::Conn,
    table: &TableRef,
    limit: Duration,
    warnings: &mut Vec<String>,
    cnf: &str,
) -> Result<(), SourceError> {
    let row: Option<(String, Option<String>)> = timed(
        limit,
        conn.query_first("SELECT CAST(@@log_slave_updates AS CHAR), @@gtid_slave_pos"),
    )
    .await
    .map_err(|e| server_error("reading the replication settings", table, e))?;
    let Some((log_slave_updates, slave_pos)) = row else {
        return Ok(());
    };
    if log_slave_updates == "1" || log_slave_updates.eq_ignore_ascii_case("ON") {
        return Ok(());
    }
    let replicating = match timed(
        limit,
        conn.query::<mysql_async::Row, _>("SHOW ALL SLAVES STATUS"),
    )
    .await
    {
        Ok(rows) => Some(!rows.is_empty()),
        // No privilege to tell (or an old server): fall back on the slave position.
        Err(mysql_async::Error::Server(_)) => None,
        Err(e) => return Err(server_error("reading the replication status", table, e)),
    };
    let slave_pos = slave_pos.unwrap_or_default();
    match replicating {
        Some(true) => Err(setting(
            "log_slave_updates",
            "OFF",
            "this server is a replica, and without it the changes it replicates are not written \
             to its binlog, so vecsync would never see them",
            format!(
                "set log_slave_updates=ON {cnf} and restart the replica (it cannot be changed at \
                 runtime), or point vecsync at the primary"
            ),
        )),
        None if !slave_pos.is_empty() => {
            warnings.push(format!(
                "this server has replicated from another one (gtid_slave_pos={slave_pos}) and has \
                 log_slave_updates=OFF: if it is still a replica, the changes it replicates never \
                 reach its binlog and vecsync misses them. Set log_slave_updates=ON {cnf}, or grant \
                 vecsync SLAVE MONITOR so it can tell"
            ));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Foreign keys that make `table` the child of a cascading action: InnoDB applies those inside
/// the engine and the binlog has no row event for them.
async fn cascading_foreign_keys(
    conn: &mut mysql_async::Conn,
    table: &TableRef,
    limit: Duration,
) -> Result<Vec<String>, SourceError> {
    let rows: Vec<(String, String, String, String, String)> = timed(
        limit,
        conn.exec(
            "SELECT CONSTRAINT_NAME, UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME, \
             DELETE_RULE, UPDATE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? ORDER BY CONSTRAINT_NAME",
            (table.db.as_str(), table.table.as_str()),
        ),
    )
    .await
    .map_err(|e| server_error("reading the table's foreign keys", table, e))?;
    let mut warnings = Vec::new();
    for (name, parent_db, parent, on_delete, on_update) in rows {
        let actions: Vec<String> = [("DELETE", on_delete), ("UPDATE", on_update)]
            .into_iter()
            .filter(|(_, rule)| {
                rule.eq_ignore_ascii_case("CASCADE") || rule.eq_ignore_ascii_case("SET NULL")
            })
            .map(|(event, rule)| format!("ON {event} {}", rule.to_ascii_uppercase()))
            .collect();
        if actions.is_empty() {
            continue;
        }
        warnings.push(format!(
            "foreign key {name} of {table} references {parent_db}.{parent} with {}: InnoDB changes \
             {table}'s rows for it inside the engine, and the binlog has no row event for those \
             changes, so vecsync misses them (a deleted {parent} row leaves its products in the \
             index). Change the rows of {table} explicitly (and drop the cascading action), or \
             re-snapshot (--snapshot always) after such changes",
            actions.join(" and ")
        ));
    }
    Ok(warnings)
}

/// `Some(true)` when a global grant includes REPLICATION SLAVE, `Some(false)` when it surely
/// does not, `None` when roles make it impossible to tell from SHOW GRANTS.
fn has_replication_slave(grants: &[String]) -> Option<bool> {
    let mut roles = false;
    for g in grants {
        let upper = g.to_ascii_uppercase();
        if upper.contains(" ON *.* ")
            && (upper.contains("ALL PRIVILEGES") || upper.contains("REPLICATION SLAVE"))
        {
            return Some(true);
        }
        // `GRANT `role` TO `user`@`host``: no ON clause.
        if upper.starts_with("GRANT ") && !upper.contains(" ON ") {
            roles = true;
        }
    }
    if roles { None } else { Some(false) }
}

/// `user@host` (as CURRENT_USER() returns it) as a quoted grantee: `'user'@'host'`.
fn grantee_sql(current_user: &str) -> String {
    match current_user.rsplit_once('@') {
        Some((user, host)) => format!(
            "'{}'@'{}'",
            user.replace('\'', "''"),
            host.replace('\'', "''")
        ),
        None => format!("'{}'", current_user.replace('\'', "''")),
    }
}

/// A backquoted SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_replication_slave_from_grants() {
        let g = |lines: &[&str]| lines.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            has_replication_slave(&g(&[
                "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `vecsync`@`%` IDENTIFIED BY PASSWORD '*X'",
                "GRANT SELECT ON `catalog`.* TO `vecsync`@`%`",
            ])),
            Some(true)
        );
        assert_eq!(
            has_replication_slave(&g(&[
                "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"
            ])),
            Some(true)
        );
        assert_eq!(
            has_replication_slave(&g(&[
                "GRANT USAGE ON *.* TO `v`@`%`",
                "GRANT SELECT ON `catalog`.`products` TO `v`@`%`",
            ])),
            Some(false)
        );
        // Database-level ALL PRIVILEGES does not include a global privilege.
        assert_eq!(
            has_replication_slave(&g(&["GRANT ALL PRIVILEGES ON `catalog`.* TO `v`@`%`"])),
            Some(false)
        );
        assert_eq!(
            has_replication_slave(&g(&[
                "GRANT USAGE ON *.* TO `v`@`%`",
                "GRANT `replicator` TO `v`@`%`"
            ])),
            None
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(grantee_sql("vecsync@%"), "'vecsync'@'%'");
        assert_eq!(grantee_sql("o'neil@10.0.0.%"), "'o''neil'@'10.0.0.%'");
        assert_eq!(quote_ident("we`ird"), "`we``ird`");
    }
}
