//! Just enough SQL reading to classify the statements of QUERY events: transaction control, and
//! which statements touch the watched table (TRUNCATE, schema changes, statement-logged DML).
//!
//! This is a tokenizer, not a parser: it skips comments, string literals and quoted identifiers
//! correctly and finds table references by shape (`db.table` or a bare name qualified by the
//! event's default schema). Schema changes err on the side of "touches the table", which only
//! costs a metadata refresh.

/// What a QUERY event's statement means to the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Statement {
    Begin,
    Commit,
    Rollback,
    /// SAVEPOINT, ROLLBACK TO, XA ..., SET ...: nothing to do.
    Other,
    /// TRUNCATE of the watched table.
    TruncateWatched,
    /// DDL that may change the watched table's columns.
    DdlOnWatched,
    /// INSERT/UPDATE/DELETE/REPLACE/LOAD on the watched table logged as a statement: the rows are
    /// not in the binlog.
    DmlOnWatched,
}

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

/// Classify `sql`, run with default database `default_db`, for the watched `db`.`table`.
pub(crate) fn classify(sql: &str, default_db: &str, db: &str, table: &str) -> Statement {
    let tokens = tokenize(sql);
    let Some(first) = keyword(tokens.first()) else {
        return Statement::Other;
    };
    let second = keyword(tokens.get(1));
    let target = |i: usize| table_at(&tokens, i, default_db) == Some((db, table));
    match first.as_str() {
        "BEGIN" => Statement::Begin,
        "START" if second.as_deref() == Some("TRANSACTION") => Statement::Begin,
        "COMMIT" => Statement::Commit,
        "ROLLBACK" if second.as_deref() == Some("TO") => Statement::Other,
        "ROLLBACK" => Statement::Rollback,
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
            if target(i) {
                Statement::DmlOnWatched
            } else {
                Statement::Other
            }
        }
        "UPDATE" => {
            let i = skip_words(&tokens, 1, &["LOW_PRIORITY", "IGNORE"]);
            if target(i) {
                Statement::DmlOnWatched
            } else {
                Statement::Other
            }
        }
        "DELETE" => {
            let from = tokens
                .iter()
                .position(|t| keyword(Some(t)).as_deref() == Some("FROM"));
            match from {
                Some(f) if target(f + 1) => Statement::DmlOnWatched,
                _ => Statement::Other,
            }
        }
        "LOAD" => {
            let into = tokens.windows(2).position(|w| {
                keyword(Some(&w[0])).as_deref() == Some("INTO")
                    && keyword(Some(&w[1])).as_deref() == Some("TABLE")
            });
            match into {
                Some(p) if target(p + 2) => Statement::DmlOnWatched,
                _ => Statement::Other,
            }
        }
        "ALTER" | "DROP" | "RENAME" | "CREATE" => {
            if mentions(&tokens, default_db, db, table) {
                Statement::DdlOnWatched
            } else {
                Statement::Other
            }
        }
        _ => Statement::Other,
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
            c("RENAME TABLE catalog.tmp TO catalog.products", "x"),
            Statement::DdlOnWatched
        );
        assert_eq!(
            c(
                "DROP TABLE IF EXISTS `catalog`.`products` /* generated by server */",
                ""
            ),
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

    #[test]
    fn statement_logged_dml_on_the_table() {
        assert_eq!(
            c("INSERT INTO products (sku) VALUES ('a')", "catalog"),
            Statement::DmlOnWatched
        );
        assert_eq!(
            c("update low_priority catalog.products set price = 1", ""),
            Statement::DmlOnWatched
        );
        assert_eq!(
            c("DELETE FROM `products` WHERE id = 1", "catalog"),
            Statement::DmlOnWatched
        );
        assert_eq!(
            c("LOAD DATA INFILE 'x' INTO TABLE products", "catalog"),
            Statement::DmlOnWatched
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
