//! `where` filters, shared by GraphQL `Get`/`Aggregate` and the REST batch delete, checked
//! against the class and compiled once, then matched against objects.
//!
//! Semantics from Weaviate's `adapters/repos/db/inverted/searcher.go` (how a clause becomes
//! index lookups) and `row_reader_roaring_set.go` (what each operator reads):
//!
//! - a text value is tokenized like the property (stopwords removed for `word`); each token is
//!   one lookup with the clause's operator and the lookups are ANDed, so `Equal "red shirt"`
//!   needs both tokens and `NotEqual "red shirt"` needs neither; a value of stopwords only is an
//!   error;
//! - `NotEqual` is "every object except those Equal would find": an object without the property
//!   matches it;
//! - `Like` keeps `*` and `?` and matches any token;
//! - `ContainsAny` / `ContainsAll` / `ContainsNone` are `Or` / `And` / `Not Or` of one `Equal`
//!   per value (`valueText` takes a list in GraphQL; REST uses `valueTextArray` and friends);
//! - on arrays (`text[]`, `number[]`, ...) a lookup matches when any element matches;
//! - path `["id"]` (or `["_id"]`) is the object id compared as text, never tokenized;
//! - `IsNull` needs `invertedIndexConfig.indexNullState`, other operators need the property's
//!   `indexFilterable` (Weaviate answers both with an error otherwise).
//!
//! Everything else (dates, geo ranges, references, `_creationTimeUnix`, property length) is
//! refused with an error naming what the test server does not implement: a stand-in that
//! ignored a clause would let a wrong test pass.

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::text::{ONLY_STOPWORDS, Stopwords, tokenize, tokenize_pattern};

/// A filter checked against a class, ready to match objects.
#[derive(Debug)]
pub(crate) struct Filter {
    root: Node,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Equal,
    NotEqual,
    Like,
    GreaterThan,
    GreaterThanEqual,
    LessThan,
    LessThanEqual,
}

#[derive(Debug)]
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Id {
        op: Op,
        value: String,
    },
    Text {
        prop: String,
        tokenization: String,
        op: Op,
        term: String,
    },
    Number {
        prop: String,
        op: Op,
        value: f64,
    },
    Bool {
        prop: String,
        op: Op,
        value: bool,
    },
    IsNull {
        prop: String,
        null: bool,
    },
}

const VALUE_KEYS: &[&str] = &[
    "valueText",
    "valueString",
    "valueInt",
    "valueNumber",
    "valueBoolean",
    "valueDate",
    "valueGeoRange",
    "valueTextArray",
    "valueStringArray",
    "valueIntArray",
    "valueNumberArray",
    "valueBooleanArray",
    "valueDateArray",
];

fn not_implemented(what: &str) -> String {
    format!("weaviate-test-server does not implement {what}")
}

impl Filter {
    /// Check a filter (REST/JSON shape: `operator`, `path`, `value*`, `operands`) against the
    /// class, with Weaviate's messages for a bad one.
    pub(crate) fn parse(clause: &Value, class: &Value) -> Result<Filter, String> {
        Ok(Filter {
            root: compile(clause, class)?,
        })
    }

    /// Whether the object with this id and these properties matches.
    pub(crate) fn matches(&self, id: &Uuid, properties: &Map<String, Value>) -> bool {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = id.hyphenated().encode_lower(&mut text);
        eval(&self.root, id, properties)
    }

    /// The only ids that can match, when the filter pins them (`id` Equal/ContainsAny at the
    /// top or under `And`): lets a fetch of 256 ids look them up instead of scanning the class.
    pub(crate) fn id_candidates(&self) -> Option<IdCandidates> {
        candidates(&self.root)
    }
}

/// See [`Filter::id_candidates`].
pub(crate) struct IdCandidates {
    pub ids: BTreeSet<Uuid>,
    /// Being among `ids` is the whole filter: no further check needed.
    pub exact: bool,
}

fn candidates(node: &Node) -> Option<IdCandidates> {
    match node {
        Node::Id {
            op: Op::Equal,
            value,
        } => Some(IdCandidates {
            // The id is compared as text: only the canonical lowercase form can match.
            ids: Uuid::parse_str(value)
                .ok()
                .filter(|u| u.to_string() == *value)
                .into_iter()
                .collect(),
            exact: true,
        }),
        Node::Or(children) => {
            let mut all = IdCandidates {
                ids: BTreeSet::new(),
                exact: true,
            };
            for c in children {
                let child = candidates(c)?;
                all.ids.extend(child.ids);
                all.exact &= child.exact;
            }
            Some(all)
        }
        Node::And(children) => children.iter().find_map(candidates).map(|c| IdCandidates {
            exact: c.exact && children.len() == 1,
            ..c
        }),
        _ => None,
    }
}

fn operator(clause: &Value) -> Result<&str, String> {
    match clause.get("operator") {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => {
            Err("failed to parse where filter: operator is required".into())
        }
        Some(other) => Err(format!(
            "failed to parse where filter: invalid operator {other}"
        )),
    }
}

fn compile(clause: &Value, class: &Value) -> Result<Node, String> {
    let Some(map) = clause.as_object() else {
        return Err("failed to parse where filter: a clause must be an object".into());
    };
    for key in map.keys() {
        if !(key == "operator"
            || key == "operands"
            || key == "path"
            || VALUE_KEYS.contains(&key.as_str()))
        {
            return Err(format!(
                "failed to parse where filter: unknown field \"{key}\""
            ));
        }
    }
    let op = operator(clause)?;
    match op {
        "And" | "Or" | "Not" => {
            let operands = clause
                .get("operands")
                .and_then(Value::as_array)
                .filter(|o| !o.is_empty())
                .ok_or_else(|| {
                    format!("failed to parse where filter: operator {op} requires operands")
                })?;
            let children = operands
                .iter()
                .map(|o| compile(o, class))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(match op {
                "And" => Node::And(children),
                "Or" => Node::Or(children),
                _ if children.len() == 1 => {
                    Node::Not(Box::new(children.into_iter().next().expect("one child")))
                }
                _ => {
                    return Err(
                        "failed to parse where filter: operator Not takes exactly one operand"
                            .into(),
                    );
                }
            });
        }
        "WithinGeoRange" => return Err(not_implemented("the WithinGeoRange operator")),
        "Equal" | "NotEqual" | "Like" | "GreaterThan" | "GreaterThanEqual" | "LessThan"
        | "LessThanEqual" | "IsNull" | "ContainsAny" | "ContainsAll" | "ContainsNone" => {}
        other => {
            return Err(format!(
                "failed to parse where filter: unknown operator \"{other}\""
            ));
        }
    }
    if clause.get("operands").is_some_and(|o| !o.is_null()) {
        return Err(format!(
            "failed to parse where filter: operator {op} does not take operands"
        ));
    }
    let path: Vec<&str> = clause
        .get("path")
        .and_then(Value::as_array)
        .map(|p| p.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let prop = match path.as_slice() {
        [prop] => *prop,
        [] => return Err("failed to parse where filter: path is required".into()),
        _ => {
            return Err(not_implemented(
                "filters on references (a path longer than one)",
            ));
        }
    };
    let values: Vec<(&str, &Value)> = VALUE_KEYS
        .iter()
        .filter_map(|k| clause.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
        .collect();

    if op == "IsNull" {
        let null = match values.as_slice() {
            [("valueBoolean", Value::Bool(b))] => *b,
            _ => {
                return Err(
                    "failed to parse where filter: operator IsNull requires valueBoolean".into(),
                );
            }
        };
        if matches!(prop, "id" | "_id") {
            return Err(not_implemented("IsNull on the id"));
        }
        if class["invertedIndexConfig"]["indexNullState"].as_bool() != Some(true) {
            return Err(
                "Nullstate must be indexed to be filterable! Add `indexNullState: true` to the \
                 invertedIndexConfig"
                    .into(),
            );
        }
        property(class, prop)?;
        return Ok(Node::IsNull {
            prop: prop.to_owned(),
            null,
        });
    }
    let [(key, value)] = values.as_slice() else {
        return Err(if values.is_empty() {
            "failed to parse where filter: got no value, need one of valueText, valueInt, ..."
                .into()
        } else {
            "failed to parse where filter: more than one value given".into()
        });
    };
    let (key, value) = (*key, *value);
    if matches!(key, "valueDate" | "valueDateArray") {
        return Err(not_implemented("filters on dates"));
    }
    if key == "valueGeoRange" {
        return Err(not_implemented("filters on geo coordinates"));
    }
    let base_type = key
        .trim_start_matches("value")
        .trim_end_matches("Array")
        .to_ascii_lowercase();
    let contains = op.starts_with("Contains");
    let list: Vec<&Value> = match value {
        Value::Array(items) if contains => items.iter().collect(),
        Value::Array(_) => {
            return Err(format!(
                "failed to parse where filter: operator {op} takes a single value, not a list"
            ));
        }
        single => vec![single],
    };
    if !contains && key.ends_with("Array") {
        return Err(format!(
            "failed to parse where filter: {key} is only for ContainsAny, ContainsAll and ContainsNone"
        ));
    }

    let leaf = |v: &Value, op: Op| -> Result<Node, String> {
        if matches!(prop, "id" | "_id") {
            if !matches!(base_type.as_str(), "text" | "string") {
                return Err(
                    "invalid where filter: using [\"_id\"] to filter by uuid: must use \"valueText\" to specify the id"
                        .into(),
                );
            }
            let value = v
                .as_str()
                .ok_or_else(|| format!("expected value to be string, got '{v}'"))?;
            return Ok(Node::Id {
                op,
                value: value.to_owned(),
            });
        }
        let p = property(class, prop)?;
        let data_type = p["dataType"][0].as_str().unwrap_or_default();
        let prop_base = data_type.trim_end_matches("[]");
        let compatible = prop_base == base_type
            || (prop_base == "text" && base_type == "string")
            || (prop_base == "number" && base_type == "int");
        if !compatible {
            return Err(format!(
                "invalid where filter: data type filter cannot use \"{key}\" on type \"{data_type}\", use \"value{}\" instead",
                capitalize(prop_base)
            ));
        }
        if p["indexFilterable"].as_bool() == Some(false) {
            return Err(format!(
                "Filtering by property '{prop}' requires inverted index. Is `indexFilterable` \
                 option of property '{prop}' enabled? Set it to `true` or leave empty"
            ));
        }
        match prop_base {
            "text" => {
                let text = v
                    .as_str()
                    .ok_or_else(|| format!("expected value to be string, got '{v}'"))?;
                let tokenization = p["tokenization"].as_str().unwrap_or("word").to_owned();
                let terms = if op == Op::Like {
                    tokenize_pattern(text, &tokenization)?
                } else {
                    Stopwords::of(class).query_terms(text, &tokenization)?
                };
                if terms.is_empty() {
                    return Err(ONLY_STOPWORDS.into());
                }
                let mut nodes: Vec<Node> = terms
                    .into_iter()
                    .map(|term| Node::Text {
                        prop: prop.to_owned(),
                        tokenization: tokenization.clone(),
                        op,
                        term,
                    })
                    .collect();
                Ok(if nodes.len() == 1 {
                    nodes.remove(0)
                } else {
                    Node::And(nodes)
                })
            }
            "number" | "int" => {
                let n = v
                    .as_f64()
                    .ok_or_else(|| format!("expected value to be a number, got '{v}'"))?;
                if op == Op::Like {
                    return Err(format!(
                        "operator Like is not supported for data type '{data_type}'"
                    ));
                }
                Ok(Node::Number {
                    prop: prop.to_owned(),
                    op,
                    value: n,
                })
            }
            "boolean" => {
                let b = v
                    .as_bool()
                    .ok_or_else(|| format!("expected value to be a bool, got '{v}'"))?;
                if !matches!(op, Op::Equal | Op::NotEqual) {
                    return Err(format!(
                        "operator {op:?} is not supported for data type '{data_type}'"
                    ));
                }
                Ok(Node::Bool {
                    prop: prop.to_owned(),
                    op,
                    value: b,
                })
            }
            other => Err(not_implemented(&format!("filters on '{other}' properties"))),
        }
    };

    let single_op = match op {
        "Equal" | "ContainsAny" | "ContainsAll" | "ContainsNone" => Op::Equal,
        "NotEqual" => Op::NotEqual,
        "Like" => Op::Like,
        "GreaterThan" => Op::GreaterThan,
        "GreaterThanEqual" => Op::GreaterThanEqual,
        "LessThan" => Op::LessThan,
        _ => Op::LessThanEqual,
    };
    if !contains {
        return leaf(list[0], single_op);
    }
    let mut children = Vec::new();
    let mut only_stopwords = false;
    for v in list {
        match leaf(v, Op::Equal) {
            Ok(node) => children.push(node),
            // ContainsAny skips values that are only stopwords, unless all are.
            Err(e) if e == ONLY_STOPWORDS && op == "ContainsAny" => only_stopwords = true,
            Err(e) => return Err(e),
        }
    }
    if children.is_empty() {
        if only_stopwords {
            return Err(ONLY_STOPWORDS.into());
        }
        return Err(format!(
            "failed to parse where filter: operator {op} needs at least one value"
        ));
    }
    Ok(match op {
        "ContainsAny" => Node::Or(children),
        "ContainsAll" => Node::And(children),
        _ => Node::Not(Box::new(Node::Or(children))),
    })
}

fn property<'c>(class: &'c Value, name: &str) -> Result<&'c Value, String> {
    if name.starts_with('_') {
        return Err(not_implemented(&format!(
            "filters on the internal property '{name}'"
        )));
    }
    if name.starts_with("len(") {
        return Err(not_implemented("filters on property length"));
    }
    let class_name = class["class"].as_str().unwrap_or_default();
    class["properties"]
        .as_array()
        .and_then(|props| props.iter().find(|p| p["name"] == name))
        .ok_or_else(|| {
            format!(
                "invalid where filter: no such prop with name '{name}' found in class '{class_name}' in the schema. Check your schema files for which properties in this class are available"
            )
        })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn compare<T: PartialOrd>(op: Op, actual: &T, wanted: &T) -> bool {
    match op {
        Op::Equal => actual == wanted,
        Op::NotEqual => actual != wanted,
        Op::GreaterThan => actual > wanted,
        Op::GreaterThanEqual => actual >= wanted,
        Op::LessThan => actual < wanted,
        Op::LessThanEqual => actual <= wanted,
        Op::Like => false,
    }
}

/// `NotEqual` reads as "not any element Equal"; the other operators as "any element matches".
fn any_or_none<T>(op: Op, items: &[T], hit: impl Fn(Op, &T) -> bool) -> bool {
    if op == Op::NotEqual {
        !items.iter().any(|i| hit(Op::Equal, i))
    } else {
        items.iter().any(|i| hit(op, i))
    }
}

fn elements(value: Option<&Value>) -> Vec<&Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
    }
}

fn eval(node: &Node, id: &str, props: &Map<String, Value>) -> bool {
    match node {
        Node::And(children) => children.iter().all(|c| eval(c, id, props)),
        Node::Or(children) => children.iter().any(|c| eval(c, id, props)),
        Node::Not(child) => !eval(child, id, props),
        Node::Id { op, value } => match op {
            Op::Like => wildcard(value, id),
            op => compare(*op, &id, &value.as_str()),
        },
        Node::Text {
            prop,
            tokenization,
            op,
            term,
        } => {
            let mut tokens = Vec::new();
            for v in elements(props.get(prop)) {
                if let Some(s) = v.as_str() {
                    tokens.extend(tokenize(s, tokenization).unwrap_or_default());
                }
            }
            match op {
                Op::Like => tokens.iter().any(|t| wildcard(term, t)),
                op => any_or_none(*op, &tokens, |op, t| {
                    compare(op, &t.as_str(), &term.as_str())
                }),
            }
        }
        Node::Number { prop, op, value } => {
            let items: Vec<f64> = elements(props.get(prop))
                .into_iter()
                .filter_map(Value::as_f64)
                .collect();
            any_or_none(*op, &items, |op, a| compare(op, a, value))
        }
        Node::Bool { prop, op, value } => {
            let items: Vec<bool> = elements(props.get(prop))
                .into_iter()
                .filter_map(Value::as_bool)
                .collect();
            any_or_none(*op, &items, |op, a| compare(op, a, value))
        }
        Node::IsNull { prop, null } => elements(props.get(prop)).is_empty() == *null,
    }
}

/// `*` any run, `?` one character.
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class() -> Value {
        json!({"class":"Product","properties":[
            {"name":"sku","dataType":["text"],"tokenization":"whitespace"},
            {"name":"name","dataType":["text"],"tokenization":"word"},
            {"name":"tags","dataType":["text[]"],"tokenization":"word"},
            {"name":"price","dataType":["number"]},
            {"name":"stock","dataType":["int"]},
            {"name":"secret","dataType":["text"],"indexFilterable":false},
            {"name":"when","dataType":["date"]}],
            "invertedIndexConfig": {"stopwords": {"preset": "en"}}})
    }

    fn matches(clause: Value, props: Value) -> bool {
        let c = class();
        let f = Filter::parse(&clause, &c).expect("valid filter");
        f.matches(&Uuid::nil(), props.as_object().expect("object"))
    }

    fn refused(clause: Value) -> String {
        Filter::parse(&clause, &class()).expect_err("refused")
    }

    #[test]
    fn like_star_on_id_matches_everything() {
        assert!(matches(
            json!({"path":["id"],"operator":"Like","valueText":"*"}),
            json!({})
        ));
    }

    #[test]
    fn text_values_are_tokenized_and_anded() {
        let p = json!({"sku":"TS-001","name":"The Red Shirt"});
        assert!(matches(
            json!({"path":["sku"],"operator":"Equal","valueText":"TS-001"}),
            p.clone()
        ));
        assert!(!matches(
            json!({"path":["sku"],"operator":"Equal","valueText":"ts-001"}),
            p.clone()
        ));
        assert!(matches(
            json!({"path":["name"],"operator":"Equal","valueText":"shirt RED"}),
            p.clone()
        ));
        assert!(!matches(
            json!({"path":["name"],"operator":"Equal","valueText":"red hat"}),
            p.clone()
        ));
        // Stopwords are dropped from the value: "the" does not have to be there.
        assert!(matches(
            json!({"path":["name"],"operator":"Equal","valueText":"the shirt"}),
            p.clone()
        ));
        assert_eq!(
            refused(json!({"path":["name"],"operator":"Equal","valueText":"the a"})),
            ONLY_STOPWORDS
        );
        assert!(matches(
            json!({"path":["name"],"operator":"Like","valueText":"sh*"}),
            p.clone()
        ));
        assert!(matches(
            json!({"path":["sku"],"operator":"Like","valueText":"TS-00?"}),
            p.clone()
        ));
    }

    #[test]
    fn not_equal_matches_a_missing_property() {
        assert!(matches(
            json!({"path":["sku"],"operator":"NotEqual","valueText":"A"}),
            json!({})
        ));
        assert!(!matches(
            json!({"path":["sku"],"operator":"NotEqual","valueText":"A"}),
            json!({"sku":"A"})
        ));
    }

    #[test]
    fn numbers_and_arrays() {
        let p = json!({"price": 19.99, "stock": 3, "tags": ["summer sale", "red"]});
        assert!(matches(
            json!({"path":["price"],"operator":"LessThan","valueNumber":20}),
            p.clone()
        ));
        assert!(!matches(
            json!({"path":["price"],"operator":"GreaterThanEqual","valueNumber":20}),
            p.clone()
        ));
        assert!(matches(
            json!({"path":["stock"],"operator":"Equal","valueInt":3}),
            p.clone()
        ));
        assert!(matches(
            json!({"path":["tags"],"operator":"Equal","valueText":"sale"}),
            p.clone()
        ));
        assert!(matches(
            json!({"path":["tags"],"operator":"ContainsAll","valueText":["red","summer"]}),
            p.clone()
        ));
        assert!(!matches(
            json!({"path":["tags"],"operator":"ContainsAll","valueText":["red","winter"]}),
            p.clone()
        ));
        assert!(matches(
            json!({"path":["tags"],"operator":"ContainsAny","valueTextArray":["blue","red"]}),
            p.clone()
        ));
        assert!(matches(
            json!({"path":["tags"],"operator":"ContainsNone","valueText":["blue","green"]}),
            p
        ));
    }

    #[test]
    fn ids_are_compared_as_text_and_pinned() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let c = class();
        let clause = json!({"path":["id"],"operator":"ContainsAny","valueText":[a.to_string(), b.to_string()]});
        let f = Filter::parse(&clause, &c).expect("valid");
        assert!(f.matches(&a, &Map::new()));
        assert!(!f.matches(&Uuid::nil(), &Map::new()));
        let pinned = f.id_candidates().expect("pinned");
        assert_eq!(pinned.ids, [a, b].into_iter().collect());
        assert!(pinned.exact);
        // An uppercase id is compared as text: it matches nothing.
        let upper =
            json!({"path":["id"],"operator":"Equal","valueText": a.to_string().to_uppercase()});
        let f = Filter::parse(&upper, &c).expect("valid");
        assert!(!f.matches(&a, &Map::new()));
        assert_eq!(f.id_candidates().expect("pinned").ids, BTreeSet::new());
    }

    #[test]
    fn and_or_not() {
        let p = json!({"sku":"A","price": 5});
        assert!(matches(
            json!({"operator":"And","operands":[
            {"path":["sku"],"operator":"Equal","valueText":"A"},
            {"path":["price"],"operator":"LessThanEqual","valueNumber":5}]}),
            p.clone()
        ));
        assert!(matches(
            json!({"operator":"Or","operands":[
            {"path":["sku"],"operator":"Equal","valueText":"B"},
            {"path":["price"],"operator":"GreaterThan","valueNumber":4}]}),
            p.clone()
        ));
        assert!(!matches(
            json!({"operator":"Not","operands":[
            {"path":["sku"],"operator":"Equal","valueText":"A"}]}),
            p
        ));
    }

    #[test]
    fn what_weaviate_refuses_or_this_server_does_not_implement() {
        assert!(
            refused(json!({"path":["sku"],"operator":"Equal","valueInt":3}))
                .contains("use \"valueText\" instead")
        );
        assert!(
            refused(json!({"path":["nope"],"operator":"Equal","valueText":"x"}))
                .contains("no such prop")
        );
        assert!(
            refused(json!({"path":["id"],"operator":"Equal","valueInt":1})).contains("valueText")
        );
        assert!(
            refused(json!({"path":["secret"],"operator":"Equal","valueText":"x"}))
                .contains("indexFilterable")
        );
        assert!(
            refused(json!({"path":["sku"],"operator":"IsNull","valueBoolean":true}))
                .contains("indexNullState")
        );
        assert!(
            refused(json!({"path":["sku"],"operator":"Bogus","valueText":"x"}))
                .contains("unknown operator")
        );
        assert!(
            refused(json!({"path":["sku"],"operator":"Equal","valueText":"x","extra":1}))
                .contains("unknown field")
        );
        for clause in [
            json!({"path":["when"],"operator":"Equal","valueDate":"2020-01-01T00:00:00Z"}),
            json!({"path":["a","B","c"],"operator":"Equal","valueText":"x"}),
            json!({"path":["_creationTimeUnix"],"operator":"Equal","valueText":"1"}),
            json!({"path":["sku"],"operator":"WithinGeoRange","valueText":"x"}),
        ] {
            assert!(
                refused(clause.clone()).contains("does not implement"),
                "{clause}"
            );
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*", ""));
        assert!(wildcard("a*c", "abbbc"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "abbc"));
    }
}
