//! `vecsync search`: what a shopper's query finds. The query is embedded with the same embedder
//! as the products (the in-process model or the remote server), then Weaviate returns the nearest
//! products by cosine distance, or with `--hybrid` ranks them by BM25 and vector similarity
//! together; `--where` narrows either to products whose properties match.
//!
//! # `--where`
//! Conditions `property op value` with `op` one of `=`, `!=`, `<`, `<=`, `>`, `>=`, on the
//! text properties `sku`, `name`, `description` and the number `price`, e.g.
//! `--where 'price<50'` or `--where "price >= 10 and name = 'Red Shoe'"`. Several conditions are
//! joined by `,` or by the word `and` (all must hold; there is no `or`), and `--where` may be
//! given more than once. A value may be quoted with `'` or `"`, which it must be when it holds a
//! comma or the word `and`. Text comparisons follow Weaviate's semantics for the property's
//! tokenization: `description = shoes` matches descriptions containing the word "shoes".
//!
//! The Weaviate side of this lives in [`crate::sink::search`], the one place that speaks GraphQL
//! for searching.

use crate::embed::args::OpenError;
use crate::embed::{EmbedCallError, EmbedderConfig};
use crate::secret::Secret;
use crate::sink::{
    FilterOp, FilterValue, HybridQuery, PropertyFilter, SearchHit, SearchQuery, SinkError,
    WeaviateConfig, WeaviateSink,
};

/// The text properties BM25 searches in a hybrid query: what a shopper's words describe (a
/// query is rarely a SKU, and SKU fragments such as "TS" would otherwise score).
pub const HYBRID_PROPERTIES: [&str; 2] = ["name", "description"];

/// What to search and where.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub limit: usize,
    pub embedder: EmbedderConfig,
    pub weaviate_url: String,
    pub weaviate_api_key: Option<Secret>,
    pub class: String,
    /// Rank by BM25 and the vector together (Weaviate's hybrid query).
    pub hybrid: bool,
    /// The hybrid query's weight of the vector side; `None` leaves Weaviate's default (0.75).
    pub alpha: Option<f32>,
    /// Conditions every hit must meet.
    pub filters: Vec<PropertyFilter>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot embed the query: {0}")]
    Embed(#[from] EmbedCallError),
    #[error(transparent)]
    Weaviate(#[from] SinkError),
    #[error("--alpha must be between 0 and 1 (0 = keyword only, 1 = vector only), got {0}")]
    Alpha(f32),
}

/// Why a `--where` text cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhereError {
    #[error("--where {text:?}: empty condition (conditions are joined by `,` or `and`)")]
    Empty { text: String },
    #[error(
        "--where {text:?}: `{property}` is not a property to filter on (sku, name, description, price)"
    )]
    Property { text: String, property: String },
    #[error("--where {text:?}: expected one of = != < <= > >= after `{property}`")]
    Operator { text: String, property: String },
    #[error("--where {text:?}: `{property}` has no value to compare with")]
    NoValue { text: String, property: String },
    #[error("--where {text:?}: a quote is never closed")]
    Unclosed { text: String },
    #[error("--where {text:?}: price is a number, `{value}` is not")]
    Number { text: String, value: String },
}

/// The products the query finds, best first.
pub async fn search(request: &SearchRequest) -> Result<Vec<SearchHit>, SearchError> {
    if let Some(alpha) = request.alpha.filter(|a| !(0.0..=1.0).contains(a)) {
        return Err(SearchError::Alpha(alpha));
    }
    let embedder = request.embedder.open().await?;
    let vector = embedder
        .embed(vec![request.query.clone()])
        .await?
        .pop()
        .unwrap_or_default();
    let mut config = WeaviateConfig::new(request.weaviate_url.clone());
    config.api_key = request.weaviate_api_key.clone();
    config.class = request.class.clone();
    config.vector_dimensions = vector.len().max(1);
    let sink = WeaviateSink::new(config)?;
    let query = SearchQuery {
        vector,
        limit: request.limit,
        hybrid: request.hybrid.then(|| HybridQuery {
            query: request.query.clone(),
            alpha: request.alpha,
            properties: HYBRID_PROPERTIES.iter().map(|p| (*p).to_owned()).collect(),
        }),
        filters: request.filters.clone(),
    };
    Ok(sink.search(&query).await?)
}

/// Parse one `--where` text into its conditions.
pub fn parse_where(text: &str) -> Result<Vec<PropertyFilter>, WhereError> {
    split_conditions(text)?
        .iter()
        .map(|c| parse_condition(text, c))
        .collect()
}

/// Split at top-level `,` and ` and ` (case-insensitive), respecting quotes.
fn split_conditions(text: &str) -> Result<Vec<String>, WhereError> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                current.push(c);
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                current.push(c);
            }
            None if c == ',' => out.push(std::mem::take(&mut current)),
            None if c.is_whitespace() && is_and_at(&chars, i + 1) => {
                out.push(std::mem::take(&mut current));
                i += 4; // the whitespace, then "and"; the whitespace after is trimmed
                continue;
            }
            None => current.push(c),
        }
        i += 1;
    }
    if quote.is_some() {
        return Err(WhereError::Unclosed {
            text: text.to_owned(),
        });
    }
    out.push(current);
    let conditions: Vec<String> = out.into_iter().map(|c| c.trim().to_owned()).collect();
    if conditions.iter().any(String::is_empty) {
        return Err(WhereError::Empty {
            text: text.to_owned(),
        });
    }
    Ok(conditions)
}

/// Whether `and` followed by whitespace starts at `i`.
fn is_and_at(chars: &[char], i: usize) -> bool {
    chars.len() > i + 3
        && chars[i..i + 3]
            .iter()
            .collect::<String>()
            .eq_ignore_ascii_case("and")
        && chars[i + 3].is_whitespace()
}

fn parse_condition(text: &str, condition: &str) -> Result<PropertyFilter, WhereError> {
    let name_end = condition
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(condition.len());
    let property = condition[..name_end].to_ascii_lowercase();
    let is_number = match property.as_str() {
        "price" => true,
        "sku" | "name" | "description" => false,
        _ => {
            return Err(WhereError::Property {
                text: text.to_owned(),
                property: condition[..name_end].to_owned(),
            });
        }
    };
    let rest = condition[name_end..].trim_start();
    let (op, rest) = [
        ("<=", FilterOp::LessThanEqual),
        (">=", FilterOp::GreaterThanEqual),
        ("!=", FilterOp::NotEqual),
        ("==", FilterOp::Equal),
        ("=", FilterOp::Equal),
        ("<", FilterOp::LessThan),
        (">", FilterOp::GreaterThan),
    ]
    .iter()
    .find_map(|(symbol, op)| rest.strip_prefix(symbol).map(|r| (*op, r)))
    .ok_or_else(|| WhereError::Operator {
        text: text.to_owned(),
        property: property.clone(),
    })?;
    let raw = rest.trim();
    let value = ['\'', '"']
        .iter()
        .find_map(|q| {
            raw.strip_prefix(*q)
                .and_then(|r| r.strip_suffix(*q))
                .filter(|_| raw.len() >= 2)
        })
        .unwrap_or(raw);
    if value.is_empty() && raw.is_empty() {
        return Err(WhereError::NoValue {
            text: text.to_owned(),
            property,
        });
    }
    let value = if is_number {
        let n: f64 = value
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite())
            .ok_or_else(|| WhereError::Number {
                text: text.to_owned(),
                value: value.to_owned(),
            })?;
        FilterValue::Number(n)
    } else {
        FilterValue::Text(value.to_owned())
    };
    Ok(PropertyFilter {
        property,
        op,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(property: &str, op: FilterOp, value: FilterValue) -> PropertyFilter {
        PropertyFilter {
            property: property.into(),
            op,
            value,
        }
    }

    #[test]
    fn one_condition_per_operator() {
        for (text, op) in [
            ("price<50", FilterOp::LessThan),
            ("price <= 50", FilterOp::LessThanEqual),
            ("price>50", FilterOp::GreaterThan),
            ("price >=50", FilterOp::GreaterThanEqual),
            ("price=50", FilterOp::Equal),
            ("price == 50", FilterOp::Equal),
            ("price!=50", FilterOp::NotEqual),
        ] {
            assert_eq!(
                parse_where(text),
                Ok(vec![f("price", op, FilterValue::Number(50.0))]),
                "{text}"
            );
        }
    }

    #[test]
    fn conditions_join_with_commas_or_and() {
        let want = vec![
            f(
                "price",
                FilterOp::GreaterThanEqual,
                FilterValue::Number(10.5),
            ),
            f(
                "name",
                FilterOp::Equal,
                FilterValue::Text("Red Shoe".into()),
            ),
            f(
                "sku",
                FilterOp::NotEqual,
                FilterValue::Text("TS-001".into()),
            ),
        ];
        assert_eq!(
            parse_where("price>=10.5, name='Red Shoe' AND sku != TS-001"),
            Ok(want.clone())
        );
        assert_eq!(
            parse_where("price >= 10.5 and name = \"Red Shoe\", sku!=TS-001"),
            Ok(want)
        );
    }

    #[test]
    fn quotes_keep_commas_and_the_word_and() {
        assert_eq!(
            parse_where("description = 'salt and pepper, ground'"),
            Ok(vec![f(
                "description",
                FilterOp::Equal,
                FilterValue::Text("salt and pepper, ground".into())
            )])
        );
        // A word merely containing "and" is no separator.
        assert_eq!(
            parse_where("name=Sandals"),
            Ok(vec![f(
                "name",
                FilterOp::Equal,
                FilterValue::Text("Sandals".into())
            )])
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let text = |e: WhereError| e.to_string();
        assert!(text(parse_where("colour=red").expect_err("property")).contains("`colour`"));
        assert!(text(parse_where("price ~ 3").expect_err("op")).contains("= != <"));
        assert!(text(parse_where("price<").expect_err("value")).contains("no value"));
        assert!(
            text(parse_where("price<cheap").expect_err("number")).contains("price is a number")
        );
        assert!(text(parse_where("name='x").expect_err("quote")).contains("never closed"));
        assert!(text(parse_where("price<5,,name=x").expect_err("empty")).contains("empty"));
        assert!(parse_where("price<inf").is_err());
    }

    #[test]
    fn an_explicit_empty_text_is_a_value() {
        assert_eq!(
            parse_where("name=''"),
            Ok(vec![f(
                "name",
                FilterOp::Equal,
                FilterValue::Text(String::new())
            )])
        );
    }
}
