//! What a GraphQL query means: `Get` (plain listing, `where`, `nearVector`, `bm25`, `hybrid`,
//! `limit`/`offset`, properties and `_additional`) and `Aggregate { C { meta { count } } }`.
//!
//! The server fails closed: anything Weaviate's GraphQL schema does not have is answered with
//! graphql-go's validation error (`Unknown argument ...`, `Cannot query field ...`), and
//! anything Weaviate has but this server does not implement (`sort`, `nearObject`, `groupBy`,
//! `_additional { classification }`, ...) is an error naming it. Both come back as HTTP 200 with
//! `errors`, as Weaviate answers. Nothing is ignored.
//!
//! Semantics from Weaviate's source:
//! - argument and field names: `adapters/handlers/graphql/local/get/class_builder*.go`,
//!   `local/aggregate/`, `local/common_filters/` (where, nearVector, bm25, hybrid);
//! - limits: `usecases/traverser/explorer.go` (`QUERY_DEFAULTS_LIMIT_GRAPHQL` 100 without limit
//!   and offset), `adapters/repos/db/search.go` (`getTotalLimit`: `offset` alone gets
//!   `QUERY_DEFAULTS_LIMIT`, offset + limit above `QUERY_MAXIMUM_RESULTS` is an error), and
//!   `local/get/class_builder_fields.go` (`setLimitBasedOnVectorSearchParams`: a `distance` or
//!   `certainty` without `limit` returns every object within it);
//! - `_additional`: `explorer.go` (`searchResultsToGetResponseWithType`): `distance` and
//!   `certainty` only for vector searches, `score` (a string, "0" when nothing scored) and
//!   `explainScore` whenever asked;
//! - hybrid: `usecases/traverser/explorer_hybrid.go` and `hybrid/hybrid_fusion.go`
//!   (`FusionRelativeScore`): each side fetches max(100, limit) candidates, the vector side
//!   scores `1 - distance`, each side is rescaled to 0..1 (all equal: 1) and weighted by alpha /
//!   1 - alpha, ties broken by the last side's own score, then by id.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::ServerConfig;
use crate::filter::Filter;
use crate::graphql::{self, Field, GValue};
use crate::store::{ClassData, Store, StoredObject};
use crate::text::{self, Bm25Doc};

/// `QUERY_DEFAULTS_LIMIT_GRAPHQL`: a Get without limit and offset.
const GRAPHQL_DEFAULT_LIMIT: usize = 100;
/// `QUERY_HYBRID_MAXIMUM_RESULTS`: the least candidates each hybrid side fetches.
const HYBRID_CANDIDATES: usize = 100;
const DEFAULT_ALPHA: f64 = 0.75;

/// A GraphQL error in graphql-go's shape.
struct GqlError {
    message: String,
    line: usize,
    column: usize,
    path: Vec<String>,
}

impl GqlError {
    fn at(field: &Field, message: impl Into<String>) -> GqlError {
        GqlError {
            message: message.into(),
            line: field.line,
            column: field.column,
            path: Vec::new(),
        }
    }

    fn with_path(mut self, path: &[&str]) -> GqlError {
        self.path = path.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    fn to_json(&self) -> Value {
        json!({
            "locations": [{"column": self.column, "line": self.line}],
            "message": self.message,
            "path": self.path,
        })
    }
}

fn not_implemented(what: &str) -> String {
    format!("weaviate-test-server does not implement {what}")
}

/// Run a GraphQL document and return the whole answer body.
pub(crate) fn execute(
    config: &ServerConfig,
    store: &Store,
    query: &str,
    variables: &Map<String, Value>,
) -> Value {
    let roots = match graphql::parse(query, variables) {
        Ok(f) => f,
        Err(errors) => return errors,
    };
    // Validate everything first: a validation error means no data at all, as in graphql-go.
    let mut plans = Vec::new();
    for root in &roots {
        match plan_root(store, root) {
            Ok(plan) => plans.push(plan),
            Err(e) => return json!({ "errors": [e.to_json()] }),
        }
    }
    let mut data = Map::new();
    let mut errors = Vec::new();
    for (root, plan) in roots.iter().zip(plans) {
        let mut out = Map::new();
        for class_plan in plan {
            let key = class_plan.field.key().to_owned();
            match run(config, store, &root.name, &class_plan) {
                Ok(items) => {
                    out.insert(key, Value::Array(items));
                }
                Err(message) => {
                    errors.push(
                        GqlError::at(class_plan.field, message)
                            .with_path(&[root.key(), &key])
                            .to_json(),
                    );
                    out.insert(key, Value::Null);
                }
            }
        }
        data.insert(root.key().to_owned(), Value::Object(out));
    }
    // Moved, not `json!({"data": data})`: the macro would copy every vector through serde.
    let mut answer = Map::new();
    answer.insert("data".into(), Value::Object(data));
    if !errors.is_empty() {
        answer.insert("errors".into(), Value::Array(errors));
    }
    Value::Object(answer)
}

/// One class selection of `Get` or `Aggregate`, checked.
struct ClassPlan<'a> {
    field: &'a Field,
    class: String,
    where_: Option<Value>,
    limit: Option<i64>,
    offset: Option<i64>,
    search: Search,
    selection: Vec<Selected<'a>>,
}

enum Search {
    List,
    NearVector {
        vector: Vec<f32>,
        distance: Option<f64>,
        certainty: Option<f64>,
    },
    Bm25 {
        query: String,
        properties: Option<Vec<String>>,
    },
    Hybrid {
        query: String,
        alpha: f64,
        vector: Option<Vec<f32>>,
        properties: Option<Vec<String>>,
    },
}

enum Selected<'a> {
    Property(&'a Field),
    Additional(&'a Field, Vec<(&'a Field, Extra)>),
    /// Aggregate's `meta { count }`.
    MetaCount(&'a Field, Vec<&'a Field>),
}

#[derive(Clone, Copy, PartialEq)]
enum Extra {
    Id,
    Vector,
    Distance,
    Certainty,
    Score,
    ExplainScore,
    CreationTime,
    UpdateTime,
}

fn plan_root<'a>(store: &Store, root: &'a Field) -> Result<Vec<ClassPlan<'a>>, GqlError> {
    let object_type = match root.name.as_str() {
        "Get" => "GetObjectsObj",
        "Aggregate" => "AggregateObjectsObj",
        "Explore" => {
            return Err(GqlError::at(root, not_implemented("Explore")));
        }
        other => {
            return Err(GqlError::at(
                root,
                format!("Cannot query field \"{other}\" on type \"WeaviateObj\"."),
            ));
        }
    };
    if let Some((name, _)) = root.args.first() {
        return Err(GqlError::at(
            root,
            format!(
                "Unknown argument \"{name}\" on field \"{}\" of type \"WeaviateObj\".",
                root.name
            ),
        ));
    }
    if root.children.is_empty() {
        return Err(GqlError::at(
            root,
            format!(
                "Field \"{}\" of type \"{object_type}\" must have a sub selection.",
                root.name
            ),
        ));
    }
    root.children
        .iter()
        .map(|field| {
            let class = store.resolve(&field.name).filter(|_| {
                // GraphQL names are exact: `product` is no field even where REST would
                // upper-case it.
                field
                    .name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase())
            });
            let Some(class) = class else {
                return Err(GqlError::at(
                    field,
                    format!(
                        "Cannot query field \"{}\" on type \"{object_type}\".",
                        field.name
                    ),
                ));
            };
            let data = &store.classes[&class];
            if root.name == "Get" {
                plan_get(field, class, data)
            } else {
                plan_aggregate(field, class, data)
            }
        })
        .collect()
}

fn check_unique_args(field: &Field) -> Result<(), GqlError> {
    for (i, (name, _)) in field.args.iter().enumerate() {
        if field.args[..i].iter().any(|(n, _)| n == name) {
            return Err(GqlError::at(
                field,
                format!("There can be only one argument named \"{name}\"."),
            ));
        }
    }
    Ok(())
}

fn plan_get<'a>(
    field: &'a Field,
    class: String,
    data: &ClassData,
) -> Result<ClassPlan<'a>, GqlError> {
    check_unique_args(field)?;
    let mut plan = ClassPlan {
        field,
        class,
        where_: None,
        limit: None,
        offset: None,
        search: Search::List,
        selection: Vec::new(),
    };
    let mut searches = Vec::new();
    for (name, value) in &field.args {
        let bad = |m: String| GqlError::at(field, m);
        match name.as_str() {
            "limit" => plan.limit = Some(int_arg(name, value).map_err(bad)?),
            "offset" => plan.offset = Some(int_arg(name, value).map_err(bad)?),
            "where" => plan.where_ = Some(where_arg(name, value, &field.name).map_err(bad)?),
            "nearVector" => {
                searches.push((name.as_str(), near_vector_arg(name, value).map_err(bad)?))
            }
            "bm25" => searches.push((name.as_str(), bm25_arg(name, value).map_err(bad)?)),
            "hybrid" => searches.push((name.as_str(), hybrid_arg(name, value).map_err(bad)?)),
            "after" | "autocut" | "sort" | "nearObject" | "group" | "groupBy" => {
                return Err(bad(not_implemented(&format!(
                    "the argument \"{name}\" of Get {{ {} }}",
                    field.name
                ))));
            }
            other => {
                return Err(bad(format!(
                    "Unknown argument \"{other}\" on field \"{}\" of type \"GetObjectsObj\".",
                    field.name
                )));
            }
        }
    }
    match searches.len() {
        0 => {}
        1 => plan.search = searches.pop().map(|(_, s)| s).unwrap_or(Search::List),
        _ => {
            let names: Vec<&str> = searches.iter().map(|(n, _)| *n).collect();
            let message = if names.contains(&"bm25") && names.contains(&"nearVector") {
                "conflict: both near<Media> and keyword-based (bm25) arguments present, choose one"
                    .to_owned()
            } else {
                not_implemented(&format!("combining {}", names.join(" and ")))
            };
            return Err(GqlError::at(field, message));
        }
    }
    if field.children.is_empty() {
        return Err(GqlError::at(
            field,
            format!(
                "Field \"{}\" of type \"[{}]\" must have a sub selection.",
                field.name, field.name
            ),
        ));
    }
    for child in &field.children {
        plan.selection
            .push(select_get_field(child, &field.name, data)?);
    }
    Ok(plan)
}

fn select_get_field<'a>(
    child: &'a Field,
    class: &str,
    data: &ClassData,
) -> Result<Selected<'a>, GqlError> {
    if let Some((name, _)) = child.args.first() {
        return Err(GqlError::at(
            child,
            format!(
                "Unknown argument \"{name}\" on field \"{}\" of type \"{class}\".",
                child.name
            ),
        ));
    }
    if child.name == "_additional" {
        if child.children.is_empty() {
            return Err(GqlError::at(
                child,
                format!(
                    "Field \"_additional\" of type \"{class}Additional\" must have a sub selection."
                ),
            ));
        }
        let mut extras = Vec::new();
        for a in &child.children {
            let extra = match a.name.as_str() {
                "id" => Extra::Id,
                "vector" => Extra::Vector,
                "distance" => Extra::Distance,
                "certainty" => Extra::Certainty,
                "score" => Extra::Score,
                "explainScore" => Extra::ExplainScore,
                "creationTimeUnix" => Extra::CreationTime,
                "lastUpdateTimeUnix" => Extra::UpdateTime,
                "classification" | "vectors" | "group" | "queryProfile" => {
                    return Err(GqlError::at(
                        a,
                        not_implemented(&format!("_additional {{ {} }}", a.name)),
                    ));
                }
                other => {
                    return Err(GqlError::at(
                        a,
                        format!("Cannot query field \"{other}\" on type \"{class}Additional\"."),
                    ));
                }
            };
            if !a.children.is_empty() || !a.args.is_empty() {
                return Err(GqlError::at(
                    a,
                    format!(
                        "Field \"{}\" must not have a selection since type \"String\" has no subfields.",
                        a.name
                    ),
                ));
            }
            extras.push((a, extra));
        }
        return Ok(Selected::Additional(child, extras));
    }
    if child.name == "__typename" {
        return Err(GqlError::at(child, not_implemented("__typename")));
    }
    let Some(prop) = data.definition["properties"]
        .as_array()
        .and_then(|props| props.iter().find(|p| p["name"] == child.name.as_str()))
    else {
        return Err(GqlError::at(
            child,
            format!("Cannot query field \"{}\" on type \"{class}\".", child.name),
        ));
    };
    let data_type = prop["dataType"][0].as_str().unwrap_or_default();
    let scalar = matches!(
        data_type.trim_end_matches("[]"),
        "text" | "string" | "int" | "number" | "boolean" | "date" | "uuid" | "blob"
    );
    if !scalar {
        return Err(GqlError::at(
            child,
            not_implemented(&format!("selecting '{data_type}' properties")),
        ));
    }
    if !child.children.is_empty() {
        return Err(GqlError::at(
            child,
            format!(
                "Field \"{}\" must not have a selection since type \"String\" has no subfields.",
                child.name
            ),
        ));
    }
    Ok(Selected::Property(child))
}

fn plan_aggregate<'a>(
    field: &'a Field,
    class: String,
    _data: &ClassData,
) -> Result<ClassPlan<'a>, GqlError> {
    check_unique_args(field)?;
    let mut plan = ClassPlan {
        field,
        class,
        where_: None,
        limit: None,
        offset: None,
        search: Search::List,
        selection: Vec::new(),
    };
    for (name, value) in &field.args {
        let bad = |m: String| GqlError::at(field, m);
        match name.as_str() {
            "where" => plan.where_ = Some(where_arg(name, value, &field.name).map_err(bad)?),
            "groupBy" | "nearVector" | "nearObject" | "objectLimit" | "limit" | "hybrid"
            | "bm25" => {
                return Err(bad(not_implemented(&format!(
                    "the argument \"{name}\" of Aggregate {{ {} }}",
                    field.name
                ))));
            }
            other => {
                return Err(bad(format!(
                    "Unknown argument \"{other}\" on field \"{}\" of type \"AggregateObjectsObj\".",
                    field.name
                )));
            }
        }
    }
    if field.children.is_empty() {
        return Err(GqlError::at(
            field,
            format!(
                "Field \"{0}\" of type \"[Aggregate{0}]\" must have a sub selection.",
                field.name
            ),
        ));
    }
    for child in &field.children {
        if child.name != "meta" {
            let known = child.name == "groupedBy"
                || _data.definition["properties"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["name"] == child.name.as_str()));
            let message = if known {
                not_implemented(&format!("aggregating \"{}\"", child.name))
            } else {
                format!(
                    "Cannot query field \"{}\" on type \"Aggregate{}\".",
                    child.name, field.name
                )
            };
            return Err(GqlError::at(child, message));
        }
        if child.children.is_empty() {
            return Err(GqlError::at(
                child,
                format!(
                    "Field \"meta\" of type \"Aggregate{}MetaObject\" must have a sub selection.",
                    field.name
                ),
            ));
        }
        let mut counts = Vec::new();
        for m in &child.children {
            if m.name != "count" {
                return Err(GqlError::at(
                    m,
                    format!(
                        "Cannot query field \"{}\" on type \"Aggregate{}MetaObject\".",
                        m.name, field.name
                    ),
                ));
            }
            counts.push(m);
        }
        plan.selection.push(Selected::MetaCount(child, counts));
    }
    Ok(plan)
}

/// graphql-go's message for a literal of the wrong type.
fn invalid(arg: &str, value: &GValue, detail: &str) -> String {
    format!("Argument \"{arg}\" has invalid value {value}.\n{detail}")
}

fn expected(arg: &str, value: &GValue, ty: &str, found: &GValue) -> String {
    invalid(
        arg,
        value,
        &format!("Expected type \"{ty}\", found {found}."),
    )
}

fn int_arg(arg: &str, v: &GValue) -> Result<i64, String> {
    match v {
        GValue::Int(i) => Ok(*i),
        other => Err(expected(arg, v, "Int", other)),
    }
}

fn float_of(v: &GValue) -> Option<f64> {
    match v {
        GValue::Int(i) => Some(*i as f64),
        GValue::Float(f) => Some(*f),
        _ => None,
    }
}

fn string_of(v: &GValue) -> Option<&str> {
    match v {
        GValue::Str(s) | GValue::VarStr(s) => Some(s),
        _ => None,
    }
}

fn enum_of(v: &GValue) -> Option<&str> {
    match v {
        GValue::Enum(s) | GValue::VarStr(s) => Some(s),
        _ => None,
    }
}

/// The fields of an input object, each checked against `known`; `unimplemented` ones are refused
/// by name.
fn input_object<'v>(
    arg: &str,
    value: &'v GValue,
    type_name: &str,
    known: &[&str],
    unimplemented: &[&str],
) -> Result<&'v [(String, GValue)], String> {
    let GValue::Object(fields) = value else {
        return Err(expected(arg, value, type_name, value));
    };
    for (k, _) in fields {
        if unimplemented.contains(&k.as_str()) {
            return Err(not_implemented(&format!("\"{k}\" in {arg}")));
        }
        if !known.contains(&k.as_str()) {
            return Err(invalid(
                arg,
                value,
                &format!("In field \"{k}\": Unknown field."),
            ));
        }
    }
    Ok(fields)
}

fn float_list(arg: &str, whole: &GValue, field: &str, v: &GValue) -> Result<Vec<f32>, String> {
    let items = match v {
        GValue::List(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    items
        .iter()
        .map(|i| float_of(i).map(|f| f as f32))
        .collect::<Option<Vec<f32>>>()
        .ok_or_else(|| {
            invalid(
                arg,
                whole,
                &format!(
                    "In field \"{field}\": In element #1: Expected type \"Float\", found {v}."
                ),
            )
        })
}

fn string_list(arg: &str, whole: &GValue, field: &str, v: &GValue) -> Result<Vec<String>, String> {
    let items = match v {
        GValue::List(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    items
        .iter()
        .map(|i| string_of(i).map(str::to_owned))
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| {
            invalid(
                arg,
                whole,
                &format!("In field \"{field}\": Expected type \"[String]\", found {v}."),
            )
        })
}

fn near_vector_arg(arg: &str, value: &GValue) -> Result<Search, String> {
    let fields = input_object(
        arg,
        value,
        "NearVectorInpObj",
        &["vector", "distance", "certainty"],
        &["targetVectors", "vectorPerTarget", "targets"],
    )?;
    let mut vector = None;
    let (mut distance, mut certainty) = (None, None);
    for (k, v) in fields {
        match k.as_str() {
            "vector" => vector = Some(float_list(arg, value, k, v)?),
            "distance" => {
                distance = Some(float_of(v).ok_or_else(|| {
                    invalid(
                        arg,
                        value,
                        &format!("In field \"distance\": Expected type \"Float\", found {v}."),
                    )
                })?);
            }
            _ => {
                certainty = Some(float_of(v).ok_or_else(|| {
                    invalid(
                        arg,
                        value,
                        &format!("In field \"certainty\": Expected type \"Float\", found {v}."),
                    )
                })?);
            }
        }
    }
    let Some(vector) = vector else {
        return Err(
            "failed to extract nearVector params: vector or vectorPerTarget is required field"
                .into(),
        );
    };
    if distance.is_some() && certainty.is_some() {
        return Err(
            "failed to extract nearVector params: cannot provide distance and certainty".into(),
        );
    }
    Ok(Search::NearVector {
        vector,
        distance,
        certainty,
    })
}

fn bm25_arg(arg: &str, value: &GValue) -> Result<Search, String> {
    let fields = input_object(
        arg,
        value,
        "Bm25InpObj",
        &["query", "properties"],
        &["searchOperator"],
    )?;
    let mut query = String::new();
    let mut properties = None;
    for (k, v) in fields {
        if k == "query" {
            query = string_of(v)
                .ok_or_else(|| {
                    invalid(
                        arg,
                        value,
                        &format!("In field \"query\": Expected type \"String\", found {v}."),
                    )
                })?
                .to_owned();
        } else {
            properties = Some(string_list(arg, value, k, v)?);
        }
    }
    Ok(Search::Bm25 { query, properties })
}

fn hybrid_arg(arg: &str, value: &GValue) -> Result<Search, String> {
    let fields = input_object(
        arg,
        value,
        "HybridInpObj",
        &["query", "alpha", "vector", "properties", "fusionType"],
        &[
            "targetVectors",
            "maxVectorDistance",
            "searches",
            "bm25SearchOperator",
            "operands",
        ],
    )?;
    let mut query = String::new();
    let mut alpha = DEFAULT_ALPHA;
    let mut vector = None;
    let mut properties = None;
    for (k, v) in fields {
        let wrong = |ty: &str| {
            invalid(
                arg,
                value,
                &format!("In field \"{k}\": Expected type \"{ty}\", found {v}."),
            )
        };
        match k.as_str() {
            "query" => query = string_of(v).ok_or_else(|| wrong("String"))?.to_owned(),
            "alpha" => alpha = float_of(v).ok_or_else(|| wrong("Float"))?,
            "vector" => vector = Some(float_list(arg, value, k, v)?),
            "properties" => properties = Some(string_list(arg, value, k, v)?),
            _ => match enum_of(v) {
                Some("relativeScoreFusion") => {}
                Some("rankedFusion") => return Err(not_implemented("fusionType rankedFusion")),
                _ => return Err(wrong("FusionEnum")),
            },
        }
    }
    if !(0.0..=1.0).contains(&alpha) {
        return Err("failed to extract hybrid params: alpha should be between 0.0 and 1.0".into());
    }
    Ok(Search::Hybrid {
        query,
        alpha,
        vector,
        properties,
    })
}

const OPERATORS: &[&str] = &[
    "And",
    "Like",
    "Or",
    "Equal",
    "Not",
    "NotEqual",
    "GreaterThan",
    "GreaterThanEqual",
    "LessThan",
    "LessThanEqual",
    "WithinGeoRange",
    "IsNull",
    "ContainsAny",
    "ContainsAll",
    "ContainsNone",
];

/// A GraphQL `where` argument in the REST/JSON filter shape (`valueText` may be a list).
fn where_arg(arg: &str, value: &GValue, class: &str) -> Result<Value, String> {
    fn convert(arg: &str, whole: &GValue, v: &GValue, class: &str) -> Result<Value, String> {
        let GValue::Object(fields) = v else {
            return Err(expected(
                arg,
                whole,
                &format!("GetObjects{class}WhereInpObj"),
                v,
            ));
        };
        let mut out = Map::new();
        for (k, fv) in fields {
            let wrong = |ty: &str| {
                invalid(
                    arg,
                    whole,
                    &format!("In field \"{k}\": Expected type \"{ty}\", found {fv}."),
                )
            };
            let json = match k.as_str() {
                "operator" => match enum_of(fv) {
                    Some(op) if OPERATORS.contains(&op) => json!(op),
                    _ => return Err(wrong(&format!("GetObjects{class}WhereOperatorEnum"))),
                },
                "path" => json!(string_list(arg, whole, k, fv)?),
                "valueText" | "valueString" | "valueDate" => match fv {
                    GValue::List(_) => json!(string_list(arg, whole, k, fv)?),
                    single => json!(string_of(single).ok_or_else(|| wrong("String"))?),
                },
                "valueInt" => match fv {
                    GValue::List(items) => Value::Array(
                        items
                            .iter()
                            .map(|i| match i {
                                GValue::Int(n) => Ok(json!(n)),
                                _ => Err(wrong("Int")),
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                    GValue::Int(n) => json!(n),
                    _ => return Err(wrong("Int")),
                },
                "valueNumber" => match fv {
                    GValue::List(items) => Value::Array(
                        items
                            .iter()
                            .map(|i| float_of(i).map(|f| json!(f)).ok_or_else(|| wrong("Float")))
                            .collect::<Result<_, _>>()?,
                    ),
                    single => json!(float_of(single).ok_or_else(|| wrong("Float"))?),
                },
                "valueBoolean" => match fv {
                    GValue::List(items) => Value::Array(
                        items
                            .iter()
                            .map(|i| match i {
                                GValue::Bool(b) => Ok(json!(b)),
                                _ => Err(wrong("Boolean")),
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                    GValue::Bool(b) => json!(b),
                    _ => return Err(wrong("Boolean")),
                },
                "valueGeoRange" => json!({"geo": true}),
                "operands" => match fv {
                    GValue::List(items) => Value::Array(
                        items
                            .iter()
                            .map(|i| convert(arg, whole, i, class))
                            .collect::<Result<_, _>>()?,
                    ),
                    single => Value::Array(vec![convert(arg, whole, single, class)?]),
                },
                _ => {
                    return Err(invalid(
                        arg,
                        whole,
                        &format!("In field \"{k}\": Unknown field."),
                    ));
                }
            };
            out.insert(k.clone(), json);
        }
        Ok(Value::Object(out))
    }
    convert(arg, value, value, class)
}

/// (offset, limit) of a Get; limit `None` means every match (a distance or certainty search
/// without limit).
fn window(
    config: &ServerConfig,
    limit: Option<i64>,
    offset: Option<i64>,
    by_distance: bool,
) -> Result<(usize, Option<usize>), String> {
    if limit.is_none() && offset.is_none() {
        return Ok(if by_distance {
            (0, None)
        } else {
            (0, Some(GRAPHQL_DEFAULT_LIMIT))
        });
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(not_implemented("a negative offset"));
    }
    let offset = offset as usize;
    let limit = limit.filter(|l| *l >= 0).map(|l| l as usize);
    if limit.is_none() && by_distance {
        return Ok((offset, None));
    }
    let effective = limit.unwrap_or(config.query_defaults_limit);
    let total = offset + effective;
    if total == 0 {
        return Err(format!(
            "invalid pagination params: invalid default limit: {effective}"
        ));
    }
    if total > config.query_maximum_results {
        return Err(format!(
            "invalid pagination params: query maximum results exceeded: the total limit calculated \
             from the provided offset '{offset}' and limit '{effective}' exceeds the configured value \
             for QUERY_MAXIMUM_RESULTS '{}'. If you've supplied a negative offset or limit, this may \
             be an underflow error",
            config.query_maximum_results
        ));
    }
    Ok((offset, Some(effective)))
}

/// One result before it is shaped by the selection.
struct Hit<'s> {
    id: &'s Uuid,
    object: &'s StoredObject,
    distance: Option<f32>,
    score: Option<f32>,
    explain: Option<String>,
}

impl<'s> Hit<'s> {
    fn plain(id: &'s Uuid, object: &'s StoredObject) -> Hit<'s> {
        Hit {
            id,
            object,
            distance: None,
            score: None,
            explain: None,
        }
    }
}

fn run(
    config: &ServerConfig,
    store: &Store,
    root: &str,
    plan: &ClassPlan<'_>,
) -> Result<Vec<Value>, String> {
    let data = &store.classes[&plan.class];
    let candidates = filtered(data, plan.where_.as_ref())?;
    if root == "Aggregate" {
        let mut item = Map::new();
        for selected in &plan.selection {
            if let Selected::MetaCount(meta, counts) = selected {
                let mut m = Map::new();
                for c in counts {
                    m.insert(c.key().to_owned(), json!(candidates.len()));
                }
                item.insert(meta.key().to_owned(), Value::Object(m));
            }
        }
        return Ok(vec![Value::Object(item)]);
    }
    let vector_search = matches!(plan.search, Search::NearVector { .. });
    let metric = data.definition["vectorIndexConfig"]["distance"]
        .as_str()
        .unwrap_or("cosine")
        .to_owned();
    let wants_certainty = plan.selection.iter().any(|s| {
        matches!(s, Selected::Additional(_, extras) if extras.iter().any(|(_, e)| *e == Extra::Certainty))
    });
    if vector_search && wants_certainty && metric != "cosine" {
        return Err(format!(
            "additional: can't compute and return certainty when vector index is configured with {metric} distance for class: {}",
            plan.class
        ));
    }
    let hits: Vec<Hit<'_>> = match &plan.search {
        Search::List => {
            let (offset, limit) = window(config, plan.limit, plan.offset, false)?;
            page(
                candidates.into_iter().map(|(id, o)| Hit::plain(id, o)),
                offset,
                limit,
            )
        }
        Search::NearVector {
            vector,
            distance,
            certainty,
        } => {
            if certainty.is_some() && metric != "cosine" {
                return Err(format!(
                    "explorer: get class: concurrentTargetVectorSearch): can't compute and return certainty when vector index is configured with {metric} distance"
                ));
            }
            let by_distance = distance.is_some() || certainty.is_some();
            let (offset, limit) = window(config, plan.limit, plan.offset, by_distance)?;
            let mut hits = nearest(data, &plan.class, &metric, vector, &candidates)?;
            hits.retain(|h| {
                let d = f64::from(h.distance.unwrap_or(0.0));
                let within_distance = distance.is_none_or(|max| d <= max || (d - max).abs() < 1e-6);
                let within_certainty = certainty.is_none_or(|min| 1.0 - d / 2.0 >= min);
                within_distance && within_certainty
            });
            page(hits.into_iter(), offset, limit)
        }
        Search::Bm25 { query, properties } => {
            if query.is_empty() {
                return Err(
                    "explorer: get class: keyword search (bm25) must have query set".into(),
                );
            }
            let (offset, limit) = window(config, plan.limit, plan.offset, false)?;
            let hits = keyword(data, query, properties.as_deref(), &candidates)?;
            page(hits.into_iter(), offset, limit)
        }
        Search::Hybrid {
            query,
            alpha,
            vector,
            properties,
        } => hybrid(
            config,
            data,
            plan,
            &metric,
            query,
            *alpha,
            vector.as_deref(),
            properties.as_deref(),
            &candidates,
        )?,
    };
    Ok(hits
        .iter()
        .map(|hit| shape(plan, hit, vector_search))
        .collect())
}

fn page<'s>(
    hits: impl Iterator<Item = Hit<'s>>,
    offset: usize,
    limit: Option<usize>,
) -> Vec<Hit<'s>> {
    hits.skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect()
}

/// The objects that pass the filter, in id order.
fn filtered<'s>(
    data: &'s ClassData,
    where_: Option<&Value>,
) -> Result<Vec<(&'s Uuid, &'s StoredObject)>, String> {
    let Some(where_) = where_ else {
        return Ok(data.objects.iter().collect());
    };
    let filter = Filter::parse(where_, &data.definition)?;
    Ok(match filter.id_candidates() {
        Some(pinned) => pinned
            .ids
            .iter()
            .filter_map(|id| data.objects.get_key_value(id))
            .filter(|(id, o)| pinned.exact || filter.matches(id, &o.properties))
            .collect(),
        None => data
            .objects
            .iter()
            .filter(|(id, o)| filter.matches(id, &o.properties))
            .collect(),
    })
}

fn nearest<'s>(
    data: &ClassData,
    class: &str,
    metric: &str,
    query: &[f32],
    candidates: &[(&'s Uuid, &'s StoredObject)],
) -> Result<Vec<Hit<'s>>, String> {
    if let Some(d) = data.dims
        && d != query.len()
    {
        return Err(format!(
            "explorer: get class: vector search: object vector search at index {}: \
             vector search: knn search: distance between entrypoint and query node: \
             vector lengths don't match: {} vs {d}",
            class.to_ascii_lowercase(),
            query.len()
        ));
    }
    let mut hits: Vec<Hit<'s>> = candidates
        .iter()
        .filter_map(|(id, o)| {
            let v = o.vector.as_ref()?;
            Some(Hit {
                distance: Some(distance(metric, query, v)),
                ..Hit::plain(id, o)
            })
        })
        .collect();
    hits.sort_by(|a, b| {
        a.distance
            .partial_cmp(&b.distance)
            .unwrap_or(Ordering::Equal)
            .then(a.id.cmp(b.id))
    });
    Ok(hits)
}

fn keyword<'s>(
    data: &'s ClassData,
    query: &str,
    properties: Option<&[String]>,
    candidates: &[(&'s Uuid, &'s StoredObject)],
) -> Result<Vec<Hit<'s>>, String> {
    let props = text::searched_properties(&data.definition, properties)?;
    let all: Vec<(&Uuid, &StoredObject)> = data.objects.iter().collect();
    let index: HashMap<&Uuid, usize> = all
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    let docs: Vec<Bm25Doc<'_>> = all
        .iter()
        .map(|(_, o)| Bm25Doc {
            properties: &o.properties,
        })
        .collect();
    let wanted: Vec<usize> = candidates
        .iter()
        .filter_map(|(id, _)| index.get(id).copied())
        .collect();
    let scored = text::bm25f(&data.definition, &props, query, &docs, &wanted)?;
    let mut hits: Vec<Hit<'s>> = scored
        .into_iter()
        .map(|(i, score)| Hit {
            score: Some(score),
            ..Hit::plain(all[i].0, all[i].1)
        })
        .collect();
    hits.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(Ordering::Equal)
            .then(a.id.cmp(b.id))
    });
    Ok(hits)
}

/// One side of a hybrid search: its weight, its name and its hits with their own scores.
type Side<'s> = (f32, &'static str, Vec<(Hit<'s>, f32)>);

#[allow(clippy::too_many_arguments)]
fn hybrid<'s>(
    config: &ServerConfig,
    data: &'s ClassData,
    plan: &ClassPlan<'_>,
    metric: &str,
    query: &str,
    alpha: f64,
    vector: Option<&[f32]>,
    properties: Option<&[String]>,
    candidates: &[(&'s Uuid, &'s StoredObject)],
) -> Result<Vec<Hit<'s>>, String> {
    // No limit and no offset: Get's default of 100; an offset alone leaves the limit unset (-1).
    let (limit, offset): (i64, usize) = match (plan.limit, plan.offset) {
        (None, None) => (GRAPHQL_DEFAULT_LIMIT as i64, 0),
        (limit, offset) => (
            limit.filter(|l| *l >= 0).unwrap_or(-1),
            offset.unwrap_or(0).max(0) as usize,
        ),
    };
    let per_side = HYBRID_CANDIDATES.max(limit.max(0) as usize);
    // (weight, name, results with their own score), vector side first as in Weaviate.
    let mut sides: Vec<Side<'s>> = Vec::new();
    if alpha > 0.0 {
        let Some(vector) = vector else {
            return Err(format!(
                "explorer: get class: hybrid: no vector given and class '{}' has no vectorizer \
                 (vectorizer \"{}\"): pass hybrid {{ vector: [...] }} or alpha: 0",
                plan.class,
                data.definition["vectorizer"].as_str().unwrap_or("none")
            ));
        };
        let hits = nearest(data, &plan.class, metric, vector, candidates)?;
        let side = hits
            .into_iter()
            .take(per_side)
            .map(|h| {
                let own = 1.0 - h.distance.unwrap_or(0.0);
                (
                    Hit {
                        distance: None,
                        ..h
                    },
                    own,
                )
            })
            .collect();
        sides.push((alpha as f32, "vector,hybridVector", side));
    }
    if 1.0 - alpha > 0.0 {
        let side = if query.is_empty() {
            Vec::new()
        } else {
            keyword(data, query, properties, candidates)?
                .into_iter()
                .take(per_side)
                .map(|h| {
                    let own = h.score.unwrap_or(0.0);
                    (h, own)
                })
                .collect()
        };
        sides.push(((1.0 - alpha) as f32, "keyword,bm25", side));
    }

    // Relative score fusion.
    struct Fused<'s> {
        hit: Hit<'s>,
        score: f32,
        secondary: f32,
        explain: String,
    }
    let mut fused: Vec<Fused<'s>> = Vec::new();
    let mut at: HashMap<Uuid, usize> = HashMap::new();
    for (weight, name, results) in sides {
        let max = results
            .iter()
            .map(|(_, s)| *s)
            .fold(f32::NEG_INFINITY, f32::max);
        let min = results
            .iter()
            .map(|(_, s)| *s)
            .fold(f32::INFINITY, f32::min);
        for (hit, own) in results {
            let mut score = weight;
            if max != min {
                score *= (own - min) / (max - min);
            }
            let mut explain = format!(
                "Hybrid (Result Set {name}) Document {}: original score {own}, normalized score: {score}",
                hit.id
            );
            match at.get(hit.id) {
                Some(&i) => {
                    let previous = &mut fused[i];
                    previous.score += score;
                    explain.push_str(" - ");
                    explain.push_str(&previous.explain);
                    previous.explain = explain;
                    previous.secondary = own;
                }
                None => {
                    at.insert(*hit.id, fused.len());
                    fused.push(Fused {
                        hit,
                        score,
                        secondary: own,
                        explain,
                    });
                }
            }
        }
    }
    fused.sort_by(|a, b| {
        let d = f64::from(b.score - a.score);
        if d * d < 1e-14 {
            let d2 = f64::from(b.secondary - a.secondary);
            if d2 * d2 < 1e-14 {
                return a.hit.id.to_string().cmp(&b.hit.id.to_string());
            }
            return b
                .secondary
                .partial_cmp(&a.secondary)
                .unwrap_or(Ordering::Equal);
        }
        b.score.partial_cmp(&a.score).unwrap_or(Ordering::Equal)
    });
    let total = if limit < 0 {
        config.query_defaults_limit + offset
    } else {
        (offset + limit as usize).min(config.query_maximum_results)
    };
    fused.truncate(total);
    let page_limit = if limit > 0 {
        limit as usize
    } else {
        HYBRID_CANDIDATES
    };
    Ok(fused
        .into_iter()
        .skip(offset)
        .take(page_limit)
        .map(|f| Hit {
            score: Some(f.score),
            explain: Some(format!("\n{}", f.explain)),
            ..f.hit
        })
        .collect())
}

fn shape(plan: &ClassPlan<'_>, hit: &Hit<'_>, vector_search: bool) -> Value {
    let mut item = Map::new();
    for selected in &plan.selection {
        match selected {
            Selected::Property(field) => {
                item.insert(
                    field.key().to_owned(),
                    hit.object
                        .properties
                        .get(&field.name)
                        .cloned()
                        .unwrap_or(Value::Null),
                );
            }
            Selected::Additional(field, extras) => {
                let mut additional = Map::new();
                for (a, extra) in extras {
                    let value = match extra {
                        Extra::Id => json!(hit.id),
                        // Built directly: serde's generic path costs more for 256 x 384 floats.
                        Extra::Vector => match &hit.object.vector {
                            Some(v) => {
                                Value::Array(v.iter().map(|f| Value::from(f64::from(*f))).collect())
                            }
                            None => Value::Null,
                        },
                        Extra::Distance if vector_search => json!(hit.distance),
                        Extra::Certainty if vector_search => {
                            json!(hit.distance.map(|d| 1.0 - d / 2.0))
                        }
                        Extra::Distance | Extra::Certainty => Value::Null,
                        Extra::Score => json!(hit.score.unwrap_or(0.0).to_string()),
                        Extra::ExplainScore => json!(hit.explain.clone().unwrap_or_default()),
                        Extra::CreationTime => json!(hit.object.created.to_string()),
                        Extra::UpdateTime => json!(hit.object.updated.to_string()),
                    };
                    additional.insert(a.key().to_owned(), value);
                }
                // Weaviate sets `_additional` only when one of the fields asked for was set:
                // `distance` and `certainty` alone, outside a vector search, give null.
                let any_set = extras.iter().any(|(_, e)| {
                    vector_search || !matches!(e, Extra::Distance | Extra::Certainty)
                });
                let value = if !any_set {
                    Value::Null
                } else {
                    Value::Object(additional)
                };
                item.insert(field.key().to_owned(), value);
            }
            Selected::MetaCount(..) => {}
        }
    }
    Value::Object(item)
}

pub(crate) fn distance(metric: &str, a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    match metric {
        "dot" => -dot,
        "l2-squared" => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        "manhattan" => a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum(),
        "hamming" => a.iter().zip(b).filter(|(x, y)| x != y).count() as f32,
        _ => {
            let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
            if na == 0.0 || nb == 0.0 {
                1.0
            } else {
                1.0 - dot / (na * nb)
            }
        }
    }
}
