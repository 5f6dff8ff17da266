//! The Weaviate class vecsync writes (`schema/product.json`, the seed's `Product` class in its
//! current form) and the check that an existing class can take vecsync's writes.
//!
//! The seed's script deleted and recreated the class on every run; a sidecar must never do that
//! (it would wipe the index). vecsync creates the class only when it is missing, and refuses to
//! start when an existing class would reject or misread its writes.

use serde_json::Value;

/// The class definition shipped with vecsync, built into the binary.
const PRODUCT_SCHEMA: &str = include_str!("../../schema/product.json");

/// What [`super::WeaviateSink::ensure_schema`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaStatus {
    /// The class was missing and vecsync created it.
    Created,
    /// The class existed and can take vecsync's writes.
    Compatible,
}

/// A Weaviate class definition (the body of `POST /v1/schema`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassSchema {
    definition: Value,
}

/// The outcome of comparing an existing class with [`ClassSchema`]: problems refuse the class,
/// warnings are logged.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Compatibility {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

impl ClassSchema {
    /// The `Product` class of `schema/product.json`.
    pub fn product() -> Self {
        // A unit test parses the embedded file, so this cannot fail in a built binary.
        ClassSchema::from_json(PRODUCT_SCHEMA)
            .unwrap_or_else(|e| unreachable!("schema/product.json is checked by tests: {e}"))
    }

    /// Parse a class definition.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let definition: Value =
            serde_json::from_str(text).map_err(|e| format!("class definition: {e}"))?;
        let schema = ClassSchema { definition };
        validate_class_name(schema.class_name())?;
        if schema.properties().is_empty() {
            return Err("class definition has no properties".into());
        }
        for p in schema.properties() {
            if p.get("name").and_then(Value::as_str).is_none() {
                return Err(format!("property without a name: {p}"));
            }
            if primitive_type(p).is_none() {
                return Err(format!("property without a dataType: {p}"));
            }
        }
        Ok(schema)
    }

    /// The same definition under another class name.
    pub fn with_class_name(mut self, name: &str) -> Result<Self, String> {
        validate_class_name(name)?;
        if let Some(obj) = self.definition.as_object_mut() {
            obj.insert("class".into(), Value::String(name.to_owned()));
        }
        Ok(self)
    }

    /// The class name.
    pub fn class_name(&self) -> &str {
        self.definition
            .get("class")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The JSON sent to `POST /v1/schema`.
    pub fn definition(&self) -> &Value {
        &self.definition
    }

    /// The names of the class's properties, in definition order.
    pub fn property_names(&self) -> Vec<String> {
        self.properties()
            .iter()
            .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    fn properties(&self) -> &[Value] {
        self.definition
            .get("properties")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// Compare an existing class (as `GET /v1/schema/{class}` returns it) with this definition.
    pub(crate) fn check(&self, existing: &Value) -> Compatibility {
        let mut c = Compatibility::default();

        let vectorizer = existing
            .get("vectorizer")
            .and_then(Value::as_str)
            .unwrap_or("none");
        let named_vectors = existing
            .get("vectorConfig")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty());
        if named_vectors && existing.get("vectorIndexType").is_none() {
            c.problems.push(
                "it uses named vectors (vectorConfig) and has no default vector, which vecsync \
                 writes"
                    .into(),
            );
        }
        if vectorizer != "none" {
            c.problems.push(format!(
                "its vectorizer is `{vectorizer}`, expected `none` (vecsync brings its own vectors, \
                 a vectorizer module would replace or reject them)"
            ));
        }
        if existing
            .pointer("/multiTenancyConfig/enabled")
            .and_then(Value::as_bool)
            == Some(true)
        {
            c.problems
                .push("multi-tenancy is enabled; vecsync writes without a tenant".into());
        }

        let expected_distance = self
            .definition
            .pointer("/vectorIndexConfig/distance")
            .and_then(Value::as_str);
        let actual_distance = existing
            .pointer("/vectorIndexConfig/distance")
            .and_then(Value::as_str);
        if let Some((want, have)) = expected_distance
            .zip(actual_distance)
            .filter(|(w, h)| w != h)
        {
            // all-MiniLM-L6-v2 vectors are normalised, so cosine, dot and l2 rank alike:
            // searches still work, only the distance values differ.
            c.warnings.push(format!(
                "its vector distance is `{have}`, not `{want}`: search distances will differ"
            ));
        }

        let existing_props: Vec<&Value> = existing
            .get("properties")
            .and_then(Value::as_array)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let find = |name: &str| {
            existing_props.iter().copied().find(|p| {
                p.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
        };
        for want in self.properties() {
            let name = want.get("name").and_then(Value::as_str).unwrap_or_default();
            let want_type = primitive_type(want).unwrap_or_default();
            let Some(have) = find(name) else {
                c.problems.push(format!("property `{name}` is missing"));
                continue;
            };
            let have_type = primitive_type(have).unwrap_or("<none>");
            if !same_type(want_type, have_type) {
                c.problems.push(format!(
                    "property `{name}` is `{have_type}`, expected `{want_type}`"
                ));
                continue;
            }
            let want_tok = want.get("tokenization").and_then(Value::as_str);
            let have_tok = have.get("tokenization").and_then(Value::as_str);
            if let Some((w, h)) = want_tok.zip(have_tok).filter(|(w, h)| w != h) {
                c.warnings.push(format!(
                    "property `{name}` is tokenized `{h}`, not `{w}`: keyword search and \
                     filters on it behave differently"
                ));
            }
        }
        for have in &existing_props {
            let name = have.get("name").and_then(Value::as_str).unwrap_or_default();
            let ours = self.properties().iter().any(|p| {
                p.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            });
            if !ours {
                c.warnings.push(format!(
                    "property `{name}` is not vecsync's: an upsert replaces the whole object and \
                     clears it"
                ));
            }
        }
        c
    }
}

/// The first element of `dataType`: Weaviate's primitive types are one-element arrays.
fn primitive_type(property: &Value) -> Option<&str> {
    property.get("dataType")?.as_array()?.first()?.as_str()
}

/// `string` is how a pre-1.19 server shows `text` (current servers migrate it on create).
fn same_type(want: &str, have: &str) -> bool {
    fn norm(t: &str) -> &str {
        match t {
            "string" => "text",
            "string[]" => "text[]",
            other => other,
        }
    }
    norm(want) == norm(have)
}

/// Weaviate's class name rule (`[A-Z][_0-9A-Za-z]{0,254}`); also keeps the name safe in a URL
/// path and a GraphQL query.
pub(crate) fn validate_class_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 255;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid Weaviate class name: it must start with an upper-case letter \
             and contain only letters, digits and `_`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The class as a current Weaviate shows it after creating the seed's definition.
    fn normalized_seed_class() -> Value {
        json!({
            "class": "Product",
            "vectorizer": "none",
            "vectorIndexType": "hnsw",
            "vectorIndexConfig": {"distance": "cosine", "ef": -1},
            "multiTenancyConfig": {"enabled": false},
            "properties": [
                {"name":"sku","dataType":["text"],"tokenization":"whitespace","indexFilterable":true,"indexSearchable":true,"indexRangeFilters":false},
                {"name":"name","dataType":["text"],"tokenization":"whitespace"},
                {"name":"description","dataType":["text"],"tokenization":"word"},
                {"name":"price","dataType":["number"]}
            ]
        })
    }

    #[test]
    fn shipped_schema_is_the_seed_class_in_current_form() {
        let s = ClassSchema::product();
        assert_eq!(s.class_name(), "Product");
        let d = s.definition();
        assert_eq!(d["vectorizer"], "none");
        assert_eq!(d["vectorIndexConfig"]["distance"], "cosine");
        let props = d["properties"].as_array().expect("properties");
        let by_name = |n: &str| {
            props
                .iter()
                .find(|p| p["name"] == n)
                .unwrap_or_else(|| panic!("property {n}"))
        };
        // The seed's `string` properties, migrated the way Weaviate migrates them.
        assert_eq!(by_name("sku")["dataType"], json!(["text"]));
        assert_eq!(by_name("sku")["tokenization"], "whitespace");
        assert_eq!(by_name("name")["tokenization"], "whitespace");
        assert_eq!(by_name("description")["tokenization"], "word");
        assert_eq!(by_name("price")["dataType"], json!(["number"]));
    }

    #[test]
    fn the_normalized_seed_class_is_compatible_without_warnings() {
        let c = ClassSchema::product().check(&normalized_seed_class());
        assert_eq!(c, Compatibility::default());
    }

    #[test]
    fn a_pre_1_19_string_property_is_compatible() {
        let mut class = normalized_seed_class();
        class["properties"][0]["dataType"] = json!(["string"]);
        class["properties"][0]["tokenization"] = json!("word");
        let c = ClassSchema::product().check(&class);
        assert!(c.problems.is_empty(), "{c:?}");
        assert_eq!(c.warnings.len(), 1, "{c:?}");
    }

    #[test]
    fn wrong_type_missing_property_and_vectorizer_are_problems() {
        let mut class = normalized_seed_class();
        class["vectorizer"] = json!("text2vec-openai");
        class["properties"][3]["dataType"] = json!(["text"]);
        class["properties"].as_array_mut().expect("array").remove(1);
        let c = ClassSchema::product().check(&class);
        assert_eq!(c.problems.len(), 3, "{c:?}");
        assert!(c.problems.iter().any(|p| p.contains("`price` is `text`")));
        assert!(c.problems.iter().any(|p| p.contains("`name` is missing")));
        assert!(c.problems.iter().any(|p| p.contains("text2vec-openai")));
    }

    #[test]
    fn foreign_properties_and_other_distance_only_warn() {
        let mut class = normalized_seed_class();
        class["vectorIndexConfig"]["distance"] = json!("dot");
        class["properties"]
            .as_array_mut()
            .expect("array")
            .push(json!({"name":"category","dataType":["text"]}));
        let c = ClassSchema::product().check(&class);
        assert!(c.problems.is_empty(), "{c:?}");
        assert_eq!(c.warnings.len(), 2, "{c:?}");
    }

    #[test]
    fn multi_tenancy_and_named_vectors_are_problems() {
        let mut class = normalized_seed_class();
        class["multiTenancyConfig"]["enabled"] = json!(true);
        class
            .as_object_mut()
            .expect("object")
            .remove("vectorIndexType");
        class["vectorConfig"] = json!({"default": {"vectorIndexType": "hnsw"}});
        let c = ClassSchema::product().check(&class);
        assert_eq!(c.problems.len(), 2, "{c:?}");
    }

    #[test]
    fn class_names_follow_weaviate_rules() {
        assert!(validate_class_name("Product").is_ok());
        assert!(validate_class_name("Product_0f3a").is_ok());
        for bad in ["", "product", "Pro-duct", "Pro duct", "Product/../x"] {
            assert!(validate_class_name(bad).is_err(), "{bad:?}");
        }
        let renamed = ClassSchema::product()
            .with_class_name("Other")
            .expect("valid");
        assert_eq!(renamed.class_name(), "Other");
        assert_eq!(renamed.definition()["class"], "Other");
    }
}
