//! Where change events end up: Weaviate (issue 4).

/// The Weaviate properties of a product (placeholder until the sink lands; same shape).
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub sku: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<serde_json::Number>,
}
