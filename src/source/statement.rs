//! Just enough SQL reading to classify the statements of QUERY events: transaction control, and
//! which statements touch the watched table (TRUNCATE, schema changes, statements that change its
//! rows without row events, statement-logged DML).
//!
//! This is a tokenizer, not a parser: it skips comments, string literals and quoted identifiers
//! correctly and finds table references by shape (`db.table` or a bare name qualified by the
//! event's default schema). Schema changes err on the side of "touches the table", which only
//! costs a metadata refresh.
//!
//! # Changes without row events
//! Partition maintenance (`TRUNCATE`, `DROP`, `EXCHANGE`, `CONVERT PARTITION`), a table swapped in
//! under the watched name (`RENAME TABLE x TO products`, `CREATE OR REPLACE TABLE products`)
//! change the table's rows without a row event: the source re-reads the table ([`Reconcile`]).
//! `DROP TABLE`/`DROP DATABASE` and renaming the table away leave nothing under its name: the
//! source stops and says what to do ([`Gone`]).
//!
//! [`Reconcile`]: Statement::Reconcile
//! [`Gone`]: Statement::Gone

/// What a QUERY event's statement means to the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Statement {
    Begin,
    Commit,
    Rollback,
    /// SAVEPOINT, ROLLBACK TO, XA START/END, SET ...: nothing to do.
    Other,
    /// `XA COMMIT` of a prepared transaction (its group's GTID event names it).
    XaCommit,
    /// `XA ROLLBACK` of a prepared transaction.
    XaRollback,
    /// TRUNCATE of the watched table.
    TruncateWatched,
    /// DDL that may change the watched table's columns.
    DdlOnWatched,
    /// INSERT/UPDATE/DELETE/REPLACE/LOAD on the watched table logged as a statement: the rows are
    /// not in the binlog. `verb` is the statement's first word (never its text: row data).
    DmlOnWatched {
        verb: String,
    },
    /// The watched table's rows changed without row events; `what` names the statement kind.
    Reconcile {
        what: &'static str,
    },
    /// Nothing is left under the watched table's name.
    Gone(Gone),
}

pub(crate) use super::error::Gone;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    /// A backquoted identifier (never a keyword).
    Quoted(String),
    Dot,
    Other,
}

fn tokenize(sql: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '-' if chars.peek() == Some(&'-') => {
                // "-- " comment to end of line.
                while chars.next().is_some_and(|c| c != '\n') {}
            }
            '#' => while chars.next().is_some_and(|c| c != '\n') {},
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '`' => {
                let mut ident = String::new();
                while let Some(c) = chars.next() {
                    if c == '`' {
                        if chars.peek() == Some(&'`') {
                            chars.next();
                            ident.push('`');
                        } else {
                            break;
                        }
                    } else {
                        ident.push(c);
                    }
                }
                out.push(Token::Quoted(ident));
            }
            '\'' | '"' => {
                let quote = c;
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        chars.next();
                    } else if c == quote {
                        if chars.peek() == Some(&quote) {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                out.push(Token::Other);
            }
            '.' => out.push(Token::Dot),
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let mut word = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_alphanumeric() || n == '_' || n == '$' {
                        word.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(word));
            }
            _ => out.push(Token::Other),
        }
    }
    out
}

fn keyword(t: Option<&Token>) -> Option<String> {
    match t {
        Some(Token::Word(w)) => Some(w.to_ascii_uppercase()),
        _ => None,
    }
}

fn ident(t: &Token) -> Option<&str> {
    match t {
        Token::Word(w) | Token::Quoted(w) => Some(w),
        _ => None,
    }
}

/// The table reference starting at `tokens[i]`, qualified with `default_db`.
fn table_at<'a>(tokens: &'a [Token], i: usize, default_db: &'a str) -> Option<(&'a str, &'a str)> {
    let first = ident(tokens.get(i)?)?;
    if tokens.get(i + 1) == Some(&Token::Dot) {
        Some((first, ident(tokens.get(i + 2)?)?))
    } else {
        Some((default_db, first))
    }
}

/// Every `name` or `db.name` in the statement that could be a table reference.
fn mentions(tokens: &[Token], default_db: &str, db: &str, table: &str) -> bool {
    (0..tokens.len()).any(|i| {
        // Skip the second half of `db.name`, which was seen with its qualifier.
        let qualified_tail = i >= 1 && tokens[i - 1] == Token::Dot;
        !qualified_tail && table_at(tokens, i, default_db) == Some((db, table))
    })
}

/// Index of the first token after `i` that is not one of `skip` (case-insensitive keywords).
fn skip_words(tokens: &[Token], mut i: usize, skip: &[&str]) -> usize {
    while let Some(k) = keyword(tokens.get(i)) {
        if skip.contains(&k.as_str()) {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// Index of the first token at or after `from` that is the keyword `word`.
fn find_keyword(tokens: &[Token], from: usize, word: &str) -> Option<usize> {
    (from..tokens.len()).find(|&i| keyword(tokens.get(i)).as_deref() == Some(word))
}

/// True when the keywords `words` follow each other starting at `tokens[i]`.
fn keywords_at(tokens: &[Token], i: usize, words: &[&str]) -> bool {
    words
        .iter()
        .enumerate()
        .all(|(k, w)| keyword(tokens.get(i + k)).as_deref() == Some(*w))
}

/// The table reference at `i` and the index after it.
fn table_ref_at<'a>(
    tokens: &'a [Token],
    i: usize,
    default_db: &'a str,
) -> Option<((&'a str, &'a str), usize)> {
    let t = table_at(tokens, i, default_db)?;
    let next = if tokens.get(i + 1) == Some(&Token::Dot) {
        i + 3
    } else {
        i + 1
    };
    Some((t, next))
}

fn qualified((db, table): (&str, &str)) -> String {
    format!("{db}.{table}")
}

/// Classify `sql`, run with default database `default_db`, for the watched `db`.`table`.
pub(crate) fn classify(sql: &str, default_db: &str, db: &str, table: &str) -> Statement {
    let tokens = tokenize(sql);
    let Some(first) = keyword(tokens.first()) else {
        return Statement::Other;
    };
    let second = keyword(tokens.get(1));
    let watched = (db, table);
    let target = |i: usize| table_at(&tokens, i, default_db) == Some(watched);
    let dml = || Statement::DmlOnWatched {
        verb: first.clone(),
    };
    match first.as_str() {
        "BEGIN" => Statement::Begin,
        "START" if second.as_deref() == Some("TRANSACTION") => Statement::Begin,
        "COMMIT" => Statement::Commit,
        "ROLLBACK" if second.as_deref() == Some("TO") => Statement::Other,
        "ROLLBACK" => Statement::Rollback,
        "XA" => match second.as_deref() {
            Some("COMMIT") => Statement::XaCommit,
            Some("ROLLBACK") => Statement::XaRollback,
            _ => Statement::Other,
        },
        "TRUNCATE" => {
            let i = skip_words(&tokens, 1, &["TABLE"]);
            if target(i) {
                Statement::TruncateWatched
            } else {
                Statement::Other
            }
        }
        "INSERT" | "REPLACE" => {
            let i = skip_words(
                &tokens,
                1,
                &["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"],
            );
            if target(i) { dml() } else { Statement::Other }
        }
        "UPDATE" => {
            // Single- or multi-table: the tables are listed before SET.
            let set = find_keyword(&tokens, 1, "SET").unwrap_or(tokens.len());
            if mentions(&tokens[..set], default_db, db, table) {
                dml()
            } else {
                Statement::Other
            }
        }
        "DELETE" => {
            // `DELETE FROM t`, `DELETE t1 FROM t1 JOIN t2`: the targets come before WHERE.
            let end = find_keyword(&tokens, 1, "WHERE").unwrap_or(tokens.len());
            let using = find_keyword(&tokens, 1, "USING").unwrap_or(end);
            if mentions(&tokens[..using.min(end)], default_db, db, table) {
                dml()
            } else {
                Statement::Other
            }
        }
        "LOAD" => {
            let into = tokens.windows(2).position(|w| {
                keyword(Some(&w[0])).as_deref() == Some("INTO")
                    && keyword(Some(&w[1])).as_deref() == Some("TABLE")
            });
            match into {
                Some(p) if target(p + 2) => dml(),
                _ => Statement::Other,
            }
        }
        "DROP" => classify_drop(&tokens, default_db, watched),
        "RENAME" => classify_rename(&tokens, default_db, watched),
        "ALTER" => classify_alter(&tokens, default_db, watched),
        "CREATE" => {
            let or_replace = keywords_at(&tokens, 1, &["OR", "REPLACE"]);
            let i = skip_words(&tokens, 1, &["OR", "REPLACE"]);
            let temporary = keyword(tokens.get(i)).as_deref() == Some("TEMPORARY");
            let i = skip_words(&tokens, i, &["TEMPORARY"]);
            if keyword(tokens.get(i)).as_deref() == Some("TABLE") {
                let t = skip_words(&tokens, i + 1, &["IF", "NOT", "EXISTS"]);
                if target(t) {
                    return if or_replace && !temporary {
                        Statement::Reconcile {
                            what: "CREATE OR REPLACE TABLE replaced it",
                        }
                    } else {
                        Statement::DdlOnWatched
                    };
                }
            }
            if mentions(&tokens, default_db, db, table) {
                Statement::DdlOnWatched
            } else {
                Statement::Other
            }
        }
        _ => Statement::Other,
    }
}

fn classify_drop(tokens: &[Token], default_db: &str, watched: (&str, &str)) -> Statement {
    let (db, table) = watched;
    match keyword(tokens.get(1)).as_deref() {
        Some("DATABASE" | "SCHEMA") => {
            let i = skip_words(tokens, 2, &["IF", "EXISTS"]);
            if tokens.get(i).and_then(ident) == Some(db) {
                Statement::Gone(Gone::Dropped { database: true })
            } else {
                Statement::Other
            }
        }
        // A temporary table only shadows the real one in its session.
        Some("TEMPORARY") => Statement::Other,
        Some("TABLE") => {
            // DROP TABLE [IF EXISTS] a, b, ... [RESTRICT | CASCADE]
            let mut i = skip_words(tokens, 2, &["IF", "EXISTS"]);
            while let Some((t, next)) = table_ref_at(tokens, i, default_db) {
                if t == watched {
                    return Statement::Gone(Gone::Dropped { database: false });
                }
                if tokens.get(next) != Some(&Token::Other) {
                    break;
                }
                i = next + 1;
            }
            Statement::Other
        }
        _ if mentions(tokens, default_db, db, table) => Statement::DdlOnWatched,
        _ => Statement::Other,
    }
}

fn classify_rename(tokens: &[Token], default_db: &str, watched: (&str, &str)) -> Statement {
    let (db, table) = watched;
    if !keywords_at(tokens, 1, &["TABLE"]) && !keywords_at(tokens, 1, &["TABLES"]) {
        return if mentions(tokens, default_db, db, table) {
            Statement::DdlOnWatched
        } else {
            Statement::Other
        };
    }
    // RENAME TABLE [IF EXISTS] a TO b [, c TO d ...]: applied left to right.
    let mut i = skip_words(tokens, 2, &["IF", "EXISTS"]);
    let mut away: Option<String> = None;
    let mut into = false;
    while let Some((from, next)) = table_ref_at(tokens, i, default_db) {
        if keyword(tokens.get(next)).as_deref() != Some("TO") {
            break;
        }
        let Some((to, after)) = table_ref_at(tokens, next + 1, default_db) else {
            break;
        };
        if from == watched {
            away = Some(qualified(to));
            into = false;
        } else if to == watched {
            into = true;
        }
        if tokens.get(after) != Some(&Token::Other) {
            break;
        }
        i = after + 1;
    }
    match (into, away) {
        (true, _) => Statement::Reconcile {
            what: "RENAME TABLE put another table in its place",
        },
        (false, Some(to)) => Statement::Gone(Gone::Renamed { to }),
        (false, None) => Statement::Other,
    }
}

fn classify_alter(tokens: &[Token], default_db: &str, watched: (&str, &str)) -> Statement {
    let (db, table) = watched;
    let i = skip_words(tokens, 1, &["ONLINE", "IGNORE"]);
    if keyword(tokens.get(i)).as_deref() != Some("TABLE") {
        return if mentions(tokens, default_db, db, table) {
            Statement::DdlOnWatched
        } else {
            Statement::Other
        };
    }
    let t = skip_words(tokens, i + 1, &["IF", "EXISTS"]);
    let Some((altered, rest)) = table_ref_at(tokens, t, default_db) else {
        return Statement::Other;
    };
    let on_watched = altered == watched;
    // Partition maintenance that moves or removes rows without row events.
    for k in rest..tokens.len() {
        let partition_op = |op: &str| keywords_at(tokens, k, &[op, "PARTITION"]);
        if on_watched {
            if partition_op("TRUNCATE") {
                return Statement::Reconcile {
                    what: "ALTER TABLE ... TRUNCATE PARTITION",
                };
            }
            if partition_op("DROP") {
                return Statement::Reconcile {
                    what: "ALTER TABLE ... DROP PARTITION",
                };
            }
            if partition_op("EXCHANGE") {
                return Statement::Reconcile {
                    what: "ALTER TABLE ... EXCHANGE PARTITION",
                };
            }
            if partition_op("CONVERT") {
                return Statement::Reconcile {
                    what: "ALTER TABLE ... CONVERT PARTITION",
                };
            }
            if keywords_at(tokens, k, &["CONVERT", "TABLE"]) {
                return Statement::Reconcile {
                    what: "ALTER TABLE ... CONVERT TABLE ... TO PARTITION",
                };
            }
            // RENAME [TO | AS] new_name, but not RENAME COLUMN/INDEX/KEY/CONSTRAINT.
            if keyword(tokens.get(k)).as_deref() == Some("RENAME") {
                let n = skip_words(tokens, k + 1, &["TO", "AS"]);
                let renames_part = matches!(
                    keyword(tokens.get(k + 1)).as_deref(),
                    Some("COLUMN" | "INDEX" | "KEY" | "CONSTRAINT")
                );
                if !renames_part {
                    if let Some((to, _)) = table_ref_at(tokens, n, default_db) {
                        if to != watched {
                            return Statement::Gone(Gone::Renamed { to: qualified(to) });
                        }
                    }
                }
            }
        } else {
            // Another table's partition swapped with, or made out of, the watched table.
            if keywords_at(tokens, k, &["WITH", "TABLE"])
                && table_at(tokens, k + 2, default_db) == Some(watched)
            {
                return Statement::Reconcile {
                    what: "ALTER TABLE ... EXCHANGE PARTITION ... WITH TABLE",
                };
            }
            if keywords_at(tokens, k, &["CONVERT", "TABLE"])
                && table_at(tokens, k + 2, default_db) == Some(watched)
            {
                return Statement::Gone(Gone::IntoPartition {
                    of: qualified(altered),
                });
            }
            if keywords_at(tokens, k, &["TO", "TABLE"])
                && table_at(tokens, k + 2, default_db) == Some(watched)
            {
                return Statement::Reconcile {
                    what: "ALTER TABLE ... CONVERT PARTITION ... TO TABLE made it anew",
                };
            }
        }
    }
    if on_watched || mentions(tokens, default_db, db, table) {
        Statement::DdlOnWatched
    } else {
        Statement::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(sql: &str, default_db: &str) -> Statement {
        classify(sql, default_db, "catalog", "products")
    }

    #[test]
    fn transaction_control() {
        assert_eq!(c("BEGIN", ""), Statement::Begin);
        assert_eq!(c("COMMIT", ""), Statement::Commit);
        assert_eq!(c("ROLLBACK", ""), Statement::Rollback);
        assert_eq!(c("ROLLBACK TO SAVEPOINT s1", ""), Statement::Other);
        assert_eq!(c("SAVEPOINT s1", ""), Statement::Other);
    }

    #[test]
    fn truncate_only_of_the_watched_table() {
        assert_eq!(
            c("truncate products", "catalog"),
            Statement::TruncateWatched
        );
        assert_eq!(
            c("TRUNCATE TABLE `catalog`.`products`", "x"),
            Statement::TruncateWatched
        );
        assert_eq!(
            c("TRUNCATE /* why */ catalog . products", ""),
            Statement::TruncateWatched
        );
        assert_eq!(c("TRUNCATE products", "other"), Statement::Other);
        assert_eq!(c("TRUNCATE catalog.products_old", ""), Statement::Other);
        assert_eq!(
            c("TRUNCATE `products`", "catalog"),
            Statement::TruncateWatched
        );
    }

    #[test]
    fn ddl_that_mentions_the_table() {
        assert_eq!(
            c(
                "ALTER TABLE products ADD COLUMN colour VARCHAR(20)",
                "catalog"
            ),
            Statement::DdlOnWatched
        );
        assert_eq!(
            c("CREATE INDEX by_name ON products (name)", "catalog"),
            Statement::DdlOnWatched
        );
        assert_eq!(
            c("ALTER TABLE products RENAME COLUMN a TO b", "catalog"),
            Statement::DdlOnWatched
        );
        // The name inside a string or a comment, or as a column of another table, is not it.
        assert_eq!(
            c(
                "ALTER TABLE other COMMENT 'products' -- products",
                "catalog"
            ),
            Statement::Other
        );
        assert_eq!(
            c("ALTER TABLE other.products ADD x INT", "catalog"),
            Statement::Other
        );
        assert_eq!(c("CREATE DATABASE catalog", ""), Statement::Other);
    }

    fn reconcile(what: &'static str) -> Statement {
        Statement::Reconcile { what }
    }

    #[test]
    fn changes_without_row_events() {
        assert_eq!(
            c("ALTER TABLE products TRUNCATE PARTITION p0, p1", "catalog"),
            reconcile("ALTER TABLE ... TRUNCATE PARTITION")
        );
        assert_eq!(
            c("alter table `catalog`.`products` drop partition p0", ""),
            reconcile("ALTER TABLE ... DROP PARTITION")
        );
        assert_eq!(
            c(
                "ALTER TABLE products EXCHANGE PARTITION p0 WITH TABLE t2",
                "catalog"
            ),
            reconcile("ALTER TABLE ... EXCHANGE PARTITION")
        );
        assert_eq!(
            c(
                "ALTER TABLE other EXCHANGE PARTITION p0 WITH TABLE products",
                "catalog"
            ),
            reconcile("ALTER TABLE ... EXCHANGE PARTITION ... WITH TABLE")
        );
        assert_eq!(
            c(
                "ALTER TABLE products CONVERT PARTITION p0 TO TABLE old",
                "catalog"
            ),
            reconcile("ALTER TABLE ... CONVERT PARTITION")
        );
        assert_eq!(
            c("CREATE OR REPLACE TABLE products (id INT)", "catalog"),
            reconcile("CREATE OR REPLACE TABLE replaced it")
        );
        assert_eq!(
            c(
                "CREATE OR REPLACE TEMPORARY TABLE products (id INT)",
                "catalog"
            ),
            Statement::DdlOnWatched
        );
        assert_eq!(
            c("RENAME TABLE products TO old, fresh TO products", "catalog"),
            reconcile("RENAME TABLE put another table in its place")
        );
        assert_eq!(
            c("RENAME TABLE catalog.tmp TO catalog.products", "x"),
            reconcile("RENAME TABLE put another table in its place")
        );
        // Partition changes that keep every row only refresh the metadata.
        assert_eq!(
            c(
                "ALTER TABLE products REORGANIZE PARTITION p0 INTO (PARTITION a, PARTITION b)",
                "catalog"
            ),
            Statement::DdlOnWatched
        );
        assert_eq!(
            c("ALTER TABLE other TRUNCATE PARTITION p0", "catalog"),
            Statement::Other
        );
    }

    #[test]
    fn the_table_going_away() {
        let dropped = Statement::Gone(Gone::Dropped { database: false });
        assert_eq!(
            c(
                "DROP TABLE IF EXISTS `catalog`.`products` /* generated by server */",
                ""
            ),
            dropped
        );
        assert_eq!(c("DROP TABLE a, products", "catalog"), dropped);
        assert_eq!(c("DROP TABLE a, b", "catalog"), Statement::Other);
        assert_eq!(
            c("DROP TEMPORARY TABLE products", "catalog"),
            Statement::Other
        );
        assert_eq!(
            c("DROP DATABASE IF EXISTS `catalog`", ""),
            Statement::Gone(Gone::Dropped { database: true })
        );
        assert_eq!(c("DROP DATABASE other", ""), Statement::Other);
        let renamed = |to: &str| Statement::Gone(Gone::Renamed { to: to.into() });
        assert_eq!(
            c("RENAME TABLE products TO products_old", "catalog"),
            renamed("catalog.products_old")
        );
        assert_eq!(
            c("RENAME TABLE catalog.products TO archive.products", "x"),
            renamed("archive.products")
        );
        assert_eq!(
            c("ALTER TABLE products RENAME TO products_old", "catalog"),
            renamed("catalog.products_old")
        );
        assert_eq!(
            c("ALTER TABLE products RENAME products_old", "catalog"),
            renamed("catalog.products_old")
        );
        assert_eq!(
            c(
                "ALTER TABLE other CONVERT TABLE products TO PARTITION p9 VALUES LESS THAN (9)",
                "catalog"
            ),
            Statement::Gone(Gone::IntoPartition {
                of: "catalog.other".into()
            })
        );
    }

    #[test]
    fn xa_control() {
        assert_eq!(c("XA COMMIT X'7831',X'',1", ""), Statement::XaCommit);
        assert_eq!(c("XA ROLLBACK X'7831',X'',1", ""), Statement::XaRollback);
        assert_eq!(c("XA START X'7831',X'',1", ""), Statement::Other);
        assert_eq!(c("XA END X'7831',X'',1", ""), Statement::Other);
    }

    fn dml(verb: &str) -> Statement {
        Statement::DmlOnWatched { verb: verb.into() }
    }

    #[test]
    fn statement_logged_dml_on_the_table() {
        assert_eq!(
            c("INSERT INTO products (sku) VALUES ('a')", "catalog"),
            dml("INSERT")
        );
        assert_eq!(
            c("update low_priority catalog.products set price = 1", ""),
            dml("UPDATE")
        );
        assert_eq!(
            c("DELETE FROM `products` WHERE id = 1", "catalog"),
            dml("DELETE")
        );
        assert_eq!(
            c("LOAD DATA INFILE 'x' INTO TABLE products", "catalog"),
            dml("LOAD")
        );
        // Multi-table forms name the table among their targets.
        assert_eq!(
            c(
                "UPDATE other o JOIN products p ON o.id = p.id SET p.price = 1",
                "catalog"
            ),
            dml("UPDATE")
        );
        assert_eq!(
            c(
                "DELETE p FROM products p JOIN other o ON o.id = p.id",
                "catalog"
            ),
            dml("DELETE")
        );
        assert_eq!(
            c(
                "UPDATE other SET x = (SELECT max(id) FROM products)",
                "catalog"
            ),
            Statement::Other
        );
        // Reading the table while writing another one is not a change to it.
        assert_eq!(
            c("INSERT INTO audit SELECT * FROM products", "catalog"),
            Statement::Other
        );
        assert_eq!(
            c("INSERT INTO products VALUES (1)", "shop"),
            Statement::Other
        );
    }
}
