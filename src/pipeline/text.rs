//! What a product row becomes in Weaviate: its properties, and the text its vector is the
//! embedding of (`--embed-template`, by default the seed's `{description}`).
//!
//! The text is always rendered from the *product* (the properties as Weaviate stores them), never
//! from the raw row. The same function then renders the text of a stored object, so the pipeline
//! can tell exactly whether Weaviate's vector still belongs to the text it would embed now. For
//! that, every column a template uses is stored: sku, name, description and price are the seed's
//! properties, any other column becomes a text property of its own (the class is created with
//! it, an existing class must have it). `price` renders as Weaviate stores it, a JSON number
//! (`79.5`, not the DECIMAL text `79.50`).

use crate::event::Row;
use crate::sink::{CORE_PROPERTIES, Product};
use crate::template::Template;

/// Turns rows into products and texts.
#[derive(Debug, Clone, Default)]
pub struct TextRule {
    template: Template,
    /// The template's columns beyond the seed's four, stored as text properties.
    extra: Vec<String>,
}

/// A template column that cannot be a Weaviate property.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--embed-template uses column `{0}`, which cannot be a Weaviate property name (letters, digits \
     and _, not starting with a digit); rename the column or leave it out of the template"
)]
pub struct BadColumn(pub String);

impl TextRule {
    pub fn new(template: Template) -> Result<Self, BadColumn> {
        let mut extra = Vec::new();
        for column in template.columns() {
            if CORE_PROPERTIES.contains(&column) {
                continue;
            }
            let valid = column
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && column
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(BadColumn(column.to_owned()));
            }
            extra.push(column.to_owned());
        }
        Ok(TextRule { template, extra })
    }

    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The text properties the class needs beyond the seed's four.
    pub fn extra_properties(&self) -> &[String] {
        &self.extra
    }

    /// The text the vector of `product` must be the embedding of; empty means no vector.
    pub fn text(&self, product: &Product) -> String {
        let mut row = Row::new();
        row.insert("sku".into(), product.sku.clone().into());
        row.insert("name".into(), product.name.clone().into());
        row.insert("description".into(), product.description.clone().into());
        row.insert(
            "price".into(),
            product
                .price
                .clone()
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
        );
        for (k, v) in &product.extra {
            row.insert(k.clone(), v.clone().into());
        }
        self.template.render(&row)
    }

    /// The Weaviate properties of a product row: sku, name, description as text, price as a
    /// number, and the template's other columns as text.
    pub fn product_of(&self, sku: String, row: &Row) -> Product {
        Product {
            sku,
            name: text_of(row, "name"),
            description: text_of(row, "description"),
            price: row.get("price").and_then(price_of),
            extra: self
                .extra
                .iter()
                .map(|c| (c.clone(), text_of(row, c)))
                .collect(),
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
    fn the_default_text_is_the_description_and_null_is_empty() {
        let rule = TextRule::default();
        let r = row(json!({"sku": "A", "name": "n", "description": "a shirt"}));
        assert_eq!(rule.text(&rule.product_of("A".into(), &r)), "a shirt");
        let r = row(json!({"sku": "A", "description": null}));
        assert_eq!(rule.text(&rule.product_of("A".into(), &r)), "");
        assert!(rule.extra_properties().is_empty());
    }

    #[test]
    fn a_template_over_several_columns_stores_every_column_it_uses() {
        let rule = TextRule::new(
            Template::parse("{name}. {description} ({category}, {price})").expect("template"),
        )
        .expect("rule");
        assert_eq!(rule.extra_properties(), ["category"]);
        let r = row(
            json!({"sku": "A", "name": "Shirt", "description": null, "category": "Tops", "price": "79.50", "stock": 3}),
        );
        let p = rule.product_of("A".into(), &r);
        assert_eq!(p.extra.get("category"), Some(&Some("Tops".to_owned())));
        assert!(
            !p.extra.contains_key("stock"),
            "columns the template does not use are not stored"
        );
        // The text comes from the product, so a stored object renders the very same text.
        assert_eq!(rule.text(&p), "Shirt.  (Tops, 79.5)");
        let stored = Product::from_properties(&p.to_properties()).expect("round trip");
        assert_eq!(rule.text(&stored), rule.text(&p));
    }

    #[test]
    fn columns_that_cannot_be_property_names_are_refused() {
        let e = TextRule::new(Template::parse("{color-code}").expect("template")).expect_err("bad");
        assert!(e.to_string().contains("color-code"), "{e}");
    }
}
