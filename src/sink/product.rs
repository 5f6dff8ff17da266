//! The object vecsync writes for a product, the write operations the pipeline hands the sink,
//! and the price conversion from MariaDB's exact DECIMAL text to a JSON number.
//!
//! # Price
//! Weaviate's `number` is a float64 and accepts only a JSON number (the string `"12.5"` is
//! rejected), so the DECIMAL text is parsed to the nearest f64 (`str::parse` rounds correctly)
//! and written with serde_json's shortest round-trip formatting. For every decimal with at most
//! 15 significant digits, which covers the seed's `DECIMAL(10,2)`, that prints exactly the digits
//! MariaDB had (`"19.99"` is written as `19.99`, trailing zeros aside). Longer decimals are rounded
//! to the nearest float64, which is all Weaviate could store anyway. serde_json's
//! `arbitrary_precision` is not enabled because it changes number handling crate-wide.

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Number, Value};
use uuid::Uuid;

/// The properties of one product as written to Weaviate. `None` is written as JSON `null`, which
/// Weaviate stores as "no value".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Product {
    pub sku: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Exact DECIMAL text converted with [`decimal_to_json_number`].
    pub price: Option<Number>,
    /// Further text properties: the other table columns an embedding template uses, stored so
    /// that the embedded text can always be rebuilt from the object itself.
    pub extra: BTreeMap<String, Option<String>>,
}

/// The seed's four properties; everything else of a product is in [`Product::extra`].
pub const CORE_PROPERTIES: [&str; 4] = ["sku", "name", "description", "price"];

impl Serialize for Product {
    /// The `properties` object of a Weaviate write, serialized directly (no `Value` tree).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(4 + self.extra.len()))?;
        map.serialize_entry("sku", &self.sku)?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("description", &self.description)?;
        map.serialize_entry("price", &self.price)?;
        for (k, v) in &self.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Product {
    /// The `properties` object of a Weaviate write.
    pub(crate) fn to_properties(&self) -> Value {
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        let mut map = Map::new();
        map.insert("sku".into(), Value::String(self.sku.clone()));
        map.insert("name".into(), text(&self.name));
        map.insert("description".into(), text(&self.description));
        map.insert(
            "price".into(),
            self.price.clone().map_or(Value::Null, Value::Number),
        );
        for (k, v) in &self.extra {
            map.insert(k.clone(), text(v));
        }
        Value::Object(map)
    }

    /// Read the properties of a stored object back. A property that is missing or null becomes
    /// `None`; one with an unexpected type is an error (the class is not the one vecsync writes).
    pub(crate) fn from_properties(props: &Value) -> Result<Product, String> {
        let obj = props
            .as_object()
            .ok_or_else(|| format!("properties is not an object: {props}"))?;
        let text = |key: &str| -> Result<Option<String>, String> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!("property `{key}` is not text: {other}")),
            }
        };
        let price = match obj.get("price") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.clone()),
            Some(other) => return Err(format!("property `price` is not a number: {other}")),
        };
        let mut extra = BTreeMap::new();
        for key in obj.keys() {
            if !CORE_PROPERTIES.contains(&key.as_str()) && key != "_additional" {
                extra.insert(key.clone(), text(key)?);
            }
        }
        Ok(Product {
            sku: text("sku")?.unwrap_or_default(),
            name: text("name")?,
            description: text("description")?,
            price,
            extra,
        })
    }
}

/// A product as stored in Weaviate, read back with its vector.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProduct {
    pub id: Uuid,
    pub product: Product,
    /// `None` when the object was written without a vector (no description).
    pub vector: Option<Vec<f32>>,
}

/// One change to apply to Weaviate. The operations of one [`super::WeaviateSink::apply`] call
/// target distinct objects (the pipeline coalesces changes per product first).
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Write the whole object (insert or replace). `vector: None` stores it without a vector.
    Upsert {
        product: Product,
        vector: Option<Vec<f32>>,
    },
    /// Change the properties and keep the stored vector (the embedded text did not change).
    PatchProperties { product: Product },
    /// Remove the object of this sku.
    Delete { sku: String },
}

impl WriteOp {
    /// The sku of the object this operation targets.
    pub fn sku(&self) -> &str {
        match self {
            WriteOp::Upsert { product, .. } | WriteOp::PatchProperties { product } => &product.sku,
            WriteOp::Delete { sku } => sku,
        }
    }
}

/// What became of one [`WriteOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    /// Weaviate confirmed it.
    Done,
    /// A [`WriteOp::PatchProperties`] found no object: the caller must embed the description and
    /// send a [`WriteOp::Upsert`] instead.
    Missing,
    /// Weaviate refused this object for good (validation); retrying the same write cannot help.
    Rejected { message: String },
}

/// A price text that is not a plain decimal number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a decimal number")]
pub struct DecimalError(pub String);

/// Convert MariaDB's DECIMAL text (`"19.99"`, `"-0.50"`, `"120"`) to the JSON number Weaviate
/// stores (see the module documentation for exactness).
pub fn decimal_to_json_number(text: &str) -> Result<Number, DecimalError> {
    let err = || DecimalError(text.to_owned());
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(err());
    }
    let value: f64 = text.parse().map_err(|_| err())?;
    // -0.00 is zero; writing `-0.0` would surprise anyone comparing prices.
    let value = if value == 0.0 { 0.0 } else { value };
    Number::from_f64(value).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn printed(text: &str) -> String {
        serde_json::to_string(&decimal_to_json_number(text).expect("valid decimal"))
            .expect("serialize")
    }

    #[test]
    fn seed_prices_print_exactly() {
        assert_eq!(printed("19.99"), "19.99");
        assert_eq!(printed("79.50"), "79.5");
        assert_eq!(printed("0.01"), "0.01");
        assert_eq!(printed("120"), "120.0");
        assert_eq!(printed("-3.10"), "-3.1");
        assert_eq!(printed("-0.00"), "0.0");
    }

    #[test]
    fn every_two_decimal_price_up_to_ten_digits_round_trips() {
        // DECIMAL(10,2) has at most 10 significant digits: sample the whole range, including the
        // largest values, and check the printed number is the decimal itself.
        let seed = 0x5eed_u64;
        println!("seed {seed}");
        let mut x = seed;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let cents = (x >> 11) % 10_000_000_000;
            let text = format!("{}.{:02}", cents / 100, cents % 100);
            let n = decimal_to_json_number(&text).expect("valid");
            let back: f64 = n.as_f64().expect("f64");
            assert_eq!(format!("{back:.2}"), text, "seed {seed}");
            assert_eq!(
                n.to_string().parse::<f64>().expect("parse"),
                text.parse::<f64>().expect("parse")
            );
        }
        assert_eq!(printed("99999999.99"), "99999999.99");
    }

    #[test]
    fn garbage_is_refused() {
        for bad in ["", "-", ".", "1e5", "NaN", "inf", "12,5", "1.2.3", " 1"] {
            assert!(decimal_to_json_number(bad).is_err(), "{bad:?}");
        }
        assert!(decimal_to_json_number(".5").is_ok());
    }

    #[test]
    fn properties_keep_nulls_and_number_price() {
        let mut p = Product {
            sku: "TS-001".into(),
            name: None,
            description: Some("A classic".into()),
            price: Some(decimal_to_json_number("19.99").expect("valid")),
            extra: BTreeMap::new(),
        };
        let props = p.to_properties();
        assert_eq!(
            props,
            json!({"sku":"TS-001","name":null,"description":"A classic","price":19.99})
        );
        assert_eq!(Product::from_properties(&props), Ok(p.clone()));
        assert_eq!(serde_json::to_value(&p).expect("serialize"), props);
        p.extra.insert("category".into(), Some("Shirts".into()));
        let props = p.to_properties();
        assert_eq!(props["category"], "Shirts");
        assert_eq!(serde_json::to_value(&p).expect("serialize"), props);
        assert_eq!(Product::from_properties(&props), Ok(p));
    }

    #[test]
    fn missing_properties_read_as_none_and_wrong_types_are_errors() {
        let p = Product::from_properties(&json!({"sku":"A"})).expect("valid");
        assert_eq!(p.name, None);
        assert_eq!(p.price, None);
        assert!(Product::from_properties(&json!({"sku":"A","price":"12.5"})).is_err());
    }
}
