//! The text vecsync embeds for a row: `--embed-template`, e.g. `'{name}. {description}'`.
//!
//! A template is literal text with `{column}` placeholders; `{{` and `}}` stand for literal
//! braces. Any column of the table may appear. A column that is missing from the row or NULL
//! renders as the empty string, so the default template `{description}` gives exactly the seed's
//! text (and a NULL description gives the empty text, which is written without a vector).
//!
//! Column values render as MariaDB shows them in the row image: strings as they are, DECIMAL as
//! its exact text, numbers in their JSON form, booleans as `true`/`false`; anything structured
//! (a JSON column read as an object) as compact JSON.
//!
//! Long texts are not cut here: the model's tokenizer truncates them (256 word pieces for
//! all-MiniLM-L6-v2), so columns placed late in a long template may not count.
//!
//! # Error handling
//! [`Template::parse`] rejects what cannot mean anything (an unclosed `{`, a lone `}`, an empty
//! or nested placeholder) with the byte offset and a hint; rendering never fails.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::event::Row;

/// The template when none is configured: the seed embedded the description alone.
pub const DEFAULT_TEMPLATE: &str = "{description}";

/// A parsed `--embed-template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Column(String),
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "--embed-template {template:?}: the `{{` at byte {at} is never closed (write `{{{{` for a literal brace)"
    )]
    Unclosed { template: String, at: usize },
    #[error(
        "--embed-template {template:?}: the `}}` at byte {at} closes nothing (write `}}}}` for a literal brace)"
    )]
    StrayClose { template: String, at: usize },
    #[error("--embed-template {template:?}: the placeholder at byte {at} names no column")]
    EmptyColumn { template: String, at: usize },
    #[error(
        "--embed-template {template:?}: a `{{` inside the placeholder at byte {at} (placeholders cannot nest)"
    )]
    Nested { template: String, at: usize },
    #[error("--embed-template {template:?} uses no column: every row would get the same vector")]
    NoColumn { template: String },
}

impl Default for Template {
    fn default() -> Self {
        Template {
            source: DEFAULT_TEMPLATE.to_owned(),
            parts: vec![Part::Column("description".to_owned())],
        }
    }
}

impl Template {
    /// Parse a template.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let err_source = || source.to_owned();
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => {
                    return Err(TemplateError::StrayClose {
                        template: err_source(),
                        at,
                    });
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            None => {
                                return Err(TemplateError::Unclosed {
                                    template: err_source(),
                                    at,
                                });
                            }
                            Some((_, '}')) => break,
                            Some((_, '{')) => {
                                return Err(TemplateError::Nested {
                                    template: err_source(),
                                    at,
                                });
                            }
                            Some((_, c)) => name.push(c),
                        }
                    }
                    if name.trim().is_empty() {
                        return Err(TemplateError::EmptyColumn {
                            template: err_source(),
                            at,
                        });
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Column(name));
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        if !parts.iter().any(|p| matches!(p, Part::Column(_))) {
            return Err(TemplateError::NoColumn {
                template: err_source(),
            });
        }
        Ok(Template {
            source: source.to_owned(),
            parts,
        })
    }

    /// The template as written (part of the embedding fingerprint).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether this is the seed's `{description}`.
    pub fn is_default(&self) -> bool {
        self.parts == Template::default().parts
    }

    /// The columns the template uses, each once, in order of first use.
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for part in &self.parts {
            if let Part::Column(c) = part
                && !out.contains(&c.as_str())
            {
                out.push(c);
            }
        }
        out
    }

    /// The text to embed for `row`.
    pub fn render(&self, row: &Row) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Column(c) => push_value(&mut out, row.get(c)),
            }
        }
        out
    }
}

fn push_value(out: &mut String, value: Option<&Value>) {
    match value {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.push_str(s),
        Some(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(other) => out.push_str(&other.to_string()),
    }
}

impl FromStr for Template {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::parse(s)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn default_is_the_seeds_description() {
        let t = Template::default();
        assert_eq!(t, Template::parse(DEFAULT_TEMPLATE).expect("parses"));
        assert!(t.is_default());
        let r = row(json!({"sku": "A", "description": "Red shoes"}));
        assert_eq!(t.render(&r), "Red shoes");
        assert_eq!(t.render(&row(json!({"description": null}))), "");
        assert_eq!(t.columns(), ["description"]);
    }

    #[test]
    fn several_columns_with_missing_and_null_as_empty() {
        let t = Template::parse("{name}. {description} ({price} EUR, {nope})").expect("parses");
        assert!(!t.is_default());
        assert_eq!(t.columns(), ["name", "description", "price", "nope"]);
        let r = row(json!({"name": "Shoe", "description": null, "price": "19.90"}));
        assert_eq!(t.render(&r), "Shoe.  (19.90 EUR, )");
    }

    #[test]
    fn values_render_as_the_row_image_shows_them() {
        let t = Template::parse("{a}|{b}|{c}|{d}|{e}").expect("parses");
        let r = row(json!({"a": 7, "b": 1.5, "c": true, "d": {"k": [1]}, "e": "x"}));
        assert_eq!(t.render(&r), r#"7|1.5|true|{"k":[1]}|x"#);
    }

    #[test]
    fn doubled_braces_are_literal() {
        let t = Template::parse("{{literal}} {name} }}{{").expect("parses");
        assert_eq!(t.columns(), ["name"]);
        assert_eq!(t.render(&row(json!({"name": "n"}))), "{literal} n }{");
    }

    #[test]
    fn a_column_used_twice_is_listed_once() {
        let t = Template::parse("{name} {name}").expect("parses");
        assert_eq!(t.columns(), ["name"]);
    }

    #[test]
    fn parse_errors_say_where_and_what() {
        let e = Template::parse("{name. x").expect_err("unclosed");
        assert_eq!(
            e,
            TemplateError::Unclosed {
                template: "{name. x".into(),
                at: 0
            }
        );
        assert!(e.to_string().contains("never closed"), "{e}");
        assert!(e.to_string().contains("`{{`"), "{e}");
        let e = Template::parse("a } {b}").expect_err("stray");
        assert!(
            matches!(e, TemplateError::StrayClose { at: 2, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("`}}`"), "{e}");
        let e = Template::parse("x {} y").expect_err("empty");
        assert!(
            matches!(e, TemplateError::EmptyColumn { at: 2, .. }),
            "{e:?}"
        );
        let e = Template::parse("{a{b}}").expect_err("nested");
        assert!(matches!(e, TemplateError::Nested { at: 0, .. }), "{e:?}");
        let e = Template::parse("just text {{x}}").expect_err("no column");
        assert!(matches!(e, TemplateError::NoColumn { .. }), "{e:?}");
    }

    #[test]
    fn non_ascii_offsets_are_byte_offsets() {
        let e = Template::parse("é {x").expect_err("unclosed");
        assert!(matches!(e, TemplateError::Unclosed { at: 3, .. }), "{e:?}");
    }
}
