//! What a product row becomes in Weaviate: its properties, and the text its vector is the
//! embedding of.
//!
//! The default is the seed's: the vector embeds the description (a NULL or empty description
//! gives an object without a vector). The same rule renders the text of a *stored* object, from
//! its properties, so the pipeline can tell whether Weaviate's vector still belongs to the text it
//! would embed now.

use crate::event::Row;
use crate::sink::Product;

/// Turns rows into products and texts.
#[derive(Debug, Clone, Default)]
pub struct TextRule {}

impl TextRule {
    /// The text to embed for this row; empty means no vector.
    pub fn render(&self, row: &Row) -> String {
        text_of(row, "description").unwrap_or_default()
    }

    /// The text the stored object's vector should be the embedding of.
    pub fn render_stored(&self, product: &Product) -> String {
        product.description.clone().unwrap_or_default()
    }

    /// The Weaviate properties of a product row: sku, name, description as text, price as a
    /// number.
    pub fn product_of(&self, sku: String, row: &Row) -> Product {
        Product {
            sku,
            name: text_of(row, "name"),
            description: text_of(row, "description"),
            price: row.get("price").and_then(price_of),
            extra: Default::default(),
        }
    }
}

fn text_of(row: &Row, column: &str) -> Option<String> {
    match row.get(column)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// DECIMAL arrives as an exact string ("19.99"); Weaviate's `number` takes a JSON number.
fn price_of(v: &serde_json::Value) -> Option<serde_json::Number> {
    match v {
        serde_json::Value::Number(n) => Some(n.clone()),
        serde_json::Value::String(s) => crate::sink::decimal_to_json_number(s).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: serde_json::Value) -> Row {
        match v {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn price_becomes_a_json_number_and_null_stays_null() {
        let rule = TextRule::default();
        let mut r = row(json!({"sku": "A", "description": "d", "price": "19.99"}));
        let p = rule.product_of("A".into(), &r);
        assert_eq!(p.price, serde_json::Number::from_f64(19.99));
        assert_eq!(
            serde_json::to_string(&p.price).ok().as_deref(),
            Some("19.99")
        );
        r.insert("price".into(), serde_json::Value::Null);
        assert_eq!(rule.product_of("A".into(), &r).price, None);
    }

    #[test]
    fn the_text_is_the_description_and_null_is_empty() {
        let rule = TextRule::default();
        let r = row(json!({"sku": "A", "name": "n", "description": "a shirt"}));
        assert_eq!(rule.render(&r), "a shirt");
        let p = rule.product_of("A".into(), &r);
        assert_eq!(rule.render_stored(&p), "a shirt");
        let r = row(json!({"sku": "A", "description": null}));
        assert_eq!(rule.render(&r), "");
        assert_eq!(rule.render_stored(&rule.product_of("A".into(), &r)), "");
    }
}
