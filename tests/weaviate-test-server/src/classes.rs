//! Collections (classes): what `POST /v1/schema` does to a definition before storing it, what
//! auto-schema adds, and how Weaviate validates an object's properties against its class.
//!
//! Behaviour follows Weaviate's `usecases/schema` and `usecases/objects/validation`: names are
//! normalised (class upper-case first, properties lower-case first), `string` is migrated to
//! `text` (tokenization `word` becomes `whitespace`), defaults are filled in (tokenization `word`,
//! `indexFilterable`/`indexSearchable`/`indexRangeFilters`, vectorizer from
//! `DEFAULT_VECTORIZER_MODULE`, `hnsw` with cosine distance), and property values are checked
//! with Weaviate's messages.

use serde_json::{Map, Value, json};

/// Data types this server stores (others are answered as Weaviate answers an unknown class
/// reference).
const PRIMITIVE_TYPES: &[&str] = &[
    "text",
    "text[]",
    "string",
    "string[]",
    "int",
    "int[]",
    "number",
    "number[]",
    "boolean",
    "boolean[]",
    "date",
    "date[]",
    "uuid",
    "uuid[]",
    "geoCoordinates",
    "phoneNumber",
    "blob",
    "object",
    "object[]",
];

/// Weaviate's class-name rule.
pub(crate) fn valid_class_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 255
}

/// Upper-case the first letter, as Weaviate does with every class name it receives.
pub(crate) fn upper_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) => c.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn valid_property_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 231
}

/// Apply Weaviate's defaults and migrations to a class definition, or return the 422 message.
pub(crate) fn normalize_class(mut class: Value, default_vectorizer: &str) -> Result<Value, String> {
    let Some(map) = class.as_object_mut() else {
        return Err("class must be an object".into());
    };
    let name = upper_first(map.get("class").and_then(Value::as_str).unwrap_or_default());
    if !valid_class_name(&name) {
        return Err(format!(
            "'{name}' is not a valid class name: it must match [A-Z][_0-9A-Za-z]{{0,254}}"
        ));
    }
    map.insert("class".into(), json!(name));

    let mut seen = Vec::new();
    let properties = map
        .entry("properties")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or("properties must be a list")?;
    for prop in properties.iter_mut() {
        normalize_property(prop)?;
        let pname = prop["name"].as_str().unwrap_or_default().to_owned();
        if seen.contains(&pname.to_ascii_lowercase()) {
            return Err(format!(
                "class \"{name}\": conflict for property \"{pname}\": already in use or provided multiple times"
            ));
        }
        seen.push(pname.to_ascii_lowercase());
    }

    let vectorizer = map
        .get("vectorizer")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .unwrap_or(default_vectorizer)
        .to_owned();
    map.insert("vectorizer".into(), json!(vectorizer));
    if map.get("vectorIndexType").and_then(Value::as_str).is_none() {
        map.insert("vectorIndexType".into(), json!("hnsw"));
    }
    let index_type = map["vectorIndexType"].as_str().unwrap_or("hnsw").to_owned();
    if !["hnsw", "flat", "dynamic", "hfresh"].contains(&index_type.as_str()) {
        return Err(format!(
            "parse vector index config: unsupported vector index type: \"{index_type}\""
        ));
    }
    let config = map.entry("vectorIndexConfig").or_insert_with(|| json!({}));
    if !config.is_object() {
        *config = json!({});
    }
    let distance = config
        .get("distance")
        .and_then(Value::as_str)
        .unwrap_or("cosine")
        .to_owned();
    if !["cosine", "dot", "l2-squared", "hamming", "manhattan"].contains(&distance.as_str()) {
        return Err(format!(
            "parse vector index config: invalid hnsw config: distance {distance} not supported"
        ));
    }
    // Weaviate's HNSW defaults (`entities/vectorindex/hnsw/config.go`), every key present as
    // Weaviate answers them (the v4 client reads them all).
    for (key, value) in [
        ("distance", json!(distance)),
        ("ef", json!(-1)),
        ("efConstruction", json!(128)),
        ("maxConnections", json!(32)),
        ("dynamicEfMin", json!(100)),
        ("dynamicEfMax", json!(500)),
        ("dynamicEfFactor", json!(8)),
        ("flatSearchCutoff", json!(40_000)),
        ("filterStrategy", json!("acorn")),
        ("cleanupIntervalSeconds", json!(300)),
        ("skip", json!(false)),
        ("vectorCacheMaxObjects", json!(1_000_000_000_000i64)),
        ("pq", json!({"enabled": false})),
        ("bq", json!({"enabled": false})),
        ("sq", json!({"enabled": false})),
        ("rq", json!({"enabled": false})),
        ("multivector", json!({"enabled": false})),
    ] {
        if let Some(cfg) = config.as_object_mut() {
            cfg.entry(key).or_insert(value);
        }
    }
    map.entry("invertedIndexConfig").or_insert_with(|| {
        json!({
            "bm25": {"b": 0.75, "k1": 1.2},
            "cleanupIntervalSeconds": 60,
            "stopwords": {"additions": null, "preset": "en", "removals": null},
            "usingBlockMaxWAND": true
        })
    });
    map.entry("multiTenancyConfig").or_insert_with(
        || json!({"enabled": false, "autoTenantCreation": false, "autoTenantActivation": false}),
    );
    map.entry("replicationConfig").or_insert_with(
        || json!({"factor": 1, "asyncEnabled": false, "deletionStrategy": "NoAutomatedResolution"}),
    );
    map.entry("shardingConfig").or_insert_with(|| {
        json!({"actualCount": 1, "actualVirtualCount": 128, "desiredCount": 1,
               "desiredVirtualCount": 128, "function": "murmur3", "key": "_id",
               "strategy": "hash", "virtualPerPhysical": 128})
    });
    Ok(class)
}

fn normalize_property(prop: &mut Value) -> Result<(), String> {
    let Some(map) = prop.as_object_mut() else {
        return Err("property must be an object".into());
    };
    let name = lower_first(map.get("name").and_then(Value::as_str).unwrap_or_default());
    if !valid_property_name(&name) {
        return Err(format!(
            "'{name}' is not a valid property name. Property names in Weaviate are restricted to \
             valid GraphQL names, which must be “/[_A-Za-z][_0-9A-Za-z]{{0,230}}/”."
        ));
    }
    map.insert("name".into(), json!(name));
    let data_type = map
        .get("dataType")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("property '{name}': dataType must not be empty"))?;
    if !PRIMITIVE_TYPES.contains(&data_type.as_str()) {
        return Err(format!(
            "property '{name}': invalid dataType: reference property to nonexistent class \"{data_type}\""
        ));
    }
    let is_text = matches!(
        data_type.as_str(),
        "text" | "text[]" | "string" | "string[]"
    );
    let tokenization = map
        .get("tokenization")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if tokenization.is_some() && !is_text {
        return Err(format!(
            "Tokenization is not allowed for data type '{data_type}'"
        ));
    }
    // Defaults first (as Weaviate: string and text default to `word`), then the 1.19 migration.
    let mut tokenization = tokenization.unwrap_or_else(|| "word".into());
    let mut data_type = data_type;
    if data_type == "string" || data_type == "string[]" {
        data_type = data_type.replace("string", "text");
        if tokenization == "word" {
            tokenization = "whitespace".into();
        }
    }
    map.insert("dataType".into(), json!([data_type]));
    if is_text {
        map.insert("tokenization".into(), json!(tokenization));
    }
    let inverted = map.remove("indexInverted").and_then(|v| v.as_bool());
    let filterable = map
        .get("indexFilterable")
        .and_then(Value::as_bool)
        .or(inverted)
        .unwrap_or(true);
    let searchable = map
        .get("indexSearchable")
        .and_then(Value::as_bool)
        .or(inverted.filter(|_| is_text))
        .unwrap_or(is_text);
    map.insert("indexFilterable".into(), json!(filterable));
    map.insert("indexSearchable".into(), json!(searchable && is_text));
    map.entry("indexRangeFilters").or_insert(json!(false));
    Ok(())
}

/// The property auto-schema adds for a value of an unknown property, or `None` for a value it
/// cannot type (null).
pub(crate) fn auto_property(name: &str, value: &Value) -> Option<Value> {
    let data_type = match value {
        Value::String(_) => "text",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Array(items) => match items.first() {
            Some(Value::Number(_)) => "number[]",
            Some(Value::Bool(_)) => "boolean[]",
            Some(Value::Object(_)) => "object[]",
            _ => "text[]",
        },
        Value::Object(_) => "object",
        Value::Null => return None,
    };
    let mut prop = json!({"name": name, "dataType": [data_type], "description":
        "This property was generated by Weaviate's auto-schema feature"});
    normalize_property(&mut prop).ok()?;
    Some(prop)
}

/// Go's `%T` for a decoded JSON value, used in Weaviate's messages.
fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "json.Number",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's `%v` for a decoded JSON value.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Check the properties of an object against its class, adding unknown properties when
/// auto-schema is on. Null values are dropped, as Weaviate drops them. Returns the properties to
/// store, or Weaviate's message.
pub(crate) fn validate_properties(
    class: &mut Value,
    properties: Option<&Value>,
    auto_schema: bool,
) -> Result<Map<String, Value>, String> {
    let class_name = class["class"].as_str().unwrap_or_default().to_owned();
    let input = match properties {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            return Err(format!(
                "could not recognize object's properties: {}",
                go_value(other)
            ));
        }
    };
    let mut out = Map::new();
    for (key, value) in input {
        if value.is_null() {
            continue;
        }
        let name = lower_first(&key);
        let existing = class["properties"]
            .as_array()
            .and_then(|props| props.iter().find(|p| p["name"] == name.as_str()).cloned());
        let prop = match existing {
            Some(p) => p,
            None if auto_schema => {
                let p = auto_property(&name, &value).ok_or_else(|| {
                    format!("no such prop with name '{name}' found in class '{class_name}'")
                })?;
                if let Some(props) = class["properties"].as_array_mut() {
                    props.push(p.clone());
                }
                p
            }
            None => {
                return Err(format!(
                    "no such prop with name '{name}' found in class '{class_name}' in the schema. \
                     Check your schema files for which properties in this class are available"
                ));
            }
        };
        let data_type = prop["dataType"][0].as_str().unwrap_or_default();
        check_value(&class_name, &name, data_type, &value)?;
        out.insert(name, value);
    }
    Ok(out)
}

fn check_value(class: &str, prop: &str, data_type: &str, value: &Value) -> Result<(), String> {
    let fail = |kind: &str, why: String| {
        Err(format!(
            "invalid {kind} property '{prop}' on class '{class}': {why}"
        ))
    };
    match data_type {
        "text" => match value {
            Value::String(_) => Ok(()),
            other => fail("text", format!("not a string, but {}", go_type_name(other))),
        },
        "number" => match value {
            Value::Number(_) => Ok(()),
            other => fail(
                "number",
                format!("requires a float, the given value is '{}'", go_value(other)),
            ),
        },
        "int" => match value {
            Value::Number(n) if n.is_i64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
                Ok(())
            }
            other => fail(
                "integer",
                format!(
                    "requires an integer, the given value is '{}'",
                    go_value(other)
                ),
            ),
        },
        "boolean" => match value {
            Value::Bool(_) => Ok(()),
            other => fail(
                "boolean",
                format!("not a bool, but {}", go_type_name(other)),
            ),
        },
        "text[]" => match value {
            Value::Array(items) if items.iter().all(Value::is_string) => Ok(()),
            other => fail(
                "text array",
                format!("not a string array, but {}", go_type_name(other)),
            ),
        },
        "number[]" => match value {
            Value::Array(items) if items.iter().all(Value::is_number) => Ok(()),
            other => fail(
                "number array",
                format!("not a number array, but {}", go_type_name(other)),
            ),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_class() -> Value {
        json!({"class":"product","properties":[
            {"name":"sku","dataType":["string"]},
            {"name":"Name","dataType":["string"],"tokenization":"field"},
            {"name":"description","dataType":["text"]},
            {"name":"price","dataType":["number"]}]})
    }

    #[test]
    fn string_becomes_text_with_weaviates_tokenization() {
        let c = normalize_class(seed_class(), "none").expect("valid");
        assert_eq!(c["class"], "Product");
        assert_eq!(c["vectorizer"], "none");
        assert_eq!(c["vectorIndexConfig"]["distance"], "cosine");
        let p = &c["properties"];
        assert_eq!(
            p[0],
            json!({"name":"sku","dataType":["text"],"tokenization":"whitespace",
                   "indexFilterable":true,"indexSearchable":true,"indexRangeFilters":false})
        );
        assert_eq!(p[1]["name"], "name");
        assert_eq!(p[1]["tokenization"], "field");
        assert_eq!(p[2]["tokenization"], "word");
        assert_eq!(p[3]["indexSearchable"], false);
        assert!(p[3].get("tokenization").is_none());
    }

    #[test]
    fn bad_definitions_are_refused() {
        assert!(normalize_class(json!({"class":"9x"}), "none").is_err());
        assert!(
            normalize_class(
                json!({"class":"A","properties":[{"name":"p","dataType":["number"],"tokenization":"word"}]}),
                "none"
            )
            .is_err()
        );
        assert!(
            normalize_class(
                json!({"class":"A","properties":[{"name":"p","dataType":["text"]},{"name":"P","dataType":["text"]}]}),
                "none"
            )
            .is_err()
        );
    }

    #[test]
    fn values_are_checked_with_weaviates_messages() {
        let mut c = normalize_class(seed_class(), "none").expect("valid");
        let e =
            validate_properties(&mut c, Some(&json!({"price":"12.5"})), false).expect_err("bad");
        assert_eq!(
            e,
            "invalid number property 'price' on class 'Product': requires a float, the given value is '12.5'"
        );
        let e = validate_properties(&mut c, Some(&json!({"name": 3})), false).expect_err("bad");
        assert_eq!(
            e,
            "invalid text property 'name' on class 'Product': not a string, but json.Number"
        );
        let ok = validate_properties(&mut c, Some(&json!({"sku":"A","price":null})), false)
            .expect("valid");
        assert_eq!(Value::Object(ok), json!({"sku":"A"}));
    }

    #[test]
    fn auto_schema_adds_unknown_properties_only_when_on() {
        let mut c = normalize_class(seed_class(), "none").expect("valid");
        assert!(validate_properties(&mut c, Some(&json!({"color":"red"})), false).is_err());
        validate_properties(&mut c, Some(&json!({"color":"red"})), true).expect("added");
        assert!(
            c["properties"]
                .as_array()
                .expect("props")
                .iter()
                .any(|p| p["name"] == "color" && p["dataType"] == json!(["text"]))
        );
    }
}
