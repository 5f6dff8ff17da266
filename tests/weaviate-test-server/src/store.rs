//! The in-memory database: classes with their objects, and collection aliases.
//!
//! One class is one shard here (Weaviate's default `desiredCount` on one node), which is what
//! `GET /v1/nodes` reports.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::classes::upper_first;

#[derive(Default)]
pub(crate) struct Store {
    pub classes: BTreeMap<String, ClassData>,
    /// Alias name -> class name (`/v1/aliases`, Weaviate 1.32+).
    pub aliases: BTreeMap<String, String>,
}

pub(crate) struct ClassData {
    pub definition: Value,
    pub objects: BTreeMap<Uuid, StoredObject>,
    /// Set by the first vector stored, as the HNSW index does.
    pub dims: Option<usize>,
    /// The one shard's name, fixed at creation (Weaviate draws a random one).
    pub shard: String,
}

impl ClassData {
    pub(crate) fn new(definition: Value) -> ClassData {
        let name = definition["class"].as_str().unwrap_or_default();
        // Weaviate shard names are 12 random characters; a stable one keeps answers repeatable.
        let shard = format!(
            "{:012x}",
            name.bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b))
                    .wrapping_mul(0x100_0000_01b3))
                & 0xffff_ffff_ffff
        );
        ClassData {
            definition,
            objects: BTreeMap::new(),
            dims: None,
            shard,
        }
    }
}

pub(crate) struct StoredObject {
    pub properties: Map<String, Value>,
    pub vector: Option<Vec<f32>>,
    pub created: i64,
    pub updated: i64,
}

impl Store {
    /// The class a name refers to, as Weaviate resolves names in object and query calls: the
    /// first letter is upper-cased, then a class of that name wins, else an alias.
    pub(crate) fn resolve(&self, name: &str) -> Option<String> {
        let name = upper_first(name);
        if self.classes.contains_key(&name) {
            return Some(name);
        }
        self.aliases
            .get(&name)
            .filter(|class| self.classes.contains_key(*class))
            .cloned()
    }

    pub(crate) fn class(&self, name: &str) -> Option<&Value> {
        self.classes.get(name).map(|c| &c.definition)
    }

    pub(crate) fn count(&self, name: &str) -> usize {
        self.classes.get(name).map_or(0, |c| c.objects.len())
    }

    pub(crate) fn object_json(&self, class: &str, id: &Uuid, vector: bool) -> Option<Value> {
        let o = self.classes.get(class)?.objects.get(id)?;
        Some(object_json(class, id, o, vector))
    }

    pub(crate) fn find_class_insensitive(&self, name: &str) -> Option<&String> {
        self.classes.keys().find(|k| k.eq_ignore_ascii_case(name))
    }
}

/// An object as the REST API shows it.
pub(crate) fn object_json(class: &str, id: &Uuid, o: &StoredObject, include_vector: bool) -> Value {
    let mut v = json!({
        "class": class,
        "creationTimeUnix": o.created,
        "id": id,
        "lastUpdateTimeUnix": o.updated,
        "properties": o.properties,
    });
    if include_vector && let Some(vector) = &o.vector {
        v["vector"] = Value::Array(vector.iter().map(|f| Value::from(f64::from(*f))).collect());
    }
    v
}
