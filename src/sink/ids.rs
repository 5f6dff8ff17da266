//! Deterministic Weaviate object ids, exactly as the seed's Python consumer made them.
//!
//! The seed called `weaviate.util.generate_uuid5(sku, 'Product')`, which is
//! `uuid5(NAMESPACE_DNS, "Product" + sku)` (the namespace string is prepended to the identifier,
//! not used as a UUID namespace). Keeping the same rule means objects the Python pipeline wrote are
//! updated in place, and a replay after a crash rewrites the same objects instead of duplicating
//! them.
//!
//! The prefix is the literal `"Product"` whatever class vecsync writes to (`--class`): Weaviate ids
//! are scoped per class, so the same id in another class never collides, and keeping the prefix
//! fixed means a product keeps its id when the index moves to a new class (blue/green reindex).

use uuid::Uuid;

/// The string the seed prepended to every sku before hashing it.
pub const ID_PREFIX: &str = "Product";

/// The Weaviate object id of the product with this sku: `uuid5(NAMESPACE_DNS, "Product" + sku)`.
pub fn product_id(sku: &str) -> Uuid {
    let mut name = String::with_capacity(ID_PREFIX.len() + sku.len());
    name.push_str(ID_PREFIX);
    name.push_str(sku);
    Uuid::new_v5(&Uuid::NAMESPACE_DNS, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Worked values from CONTRACT.md, computed with the Python client's generate_uuid5.
    #[test]
    fn product_id_matches_the_python_client() {
        assert_eq!(
            product_id("SKU-123").to_string(),
            "fe45772b-8fae-53e0-b955-515010125b4c"
        );
    }

    #[test]
    fn plain_uuid5_matches_the_python_client_without_namespace() {
        // generate_uuid5("SKU-123") and generate_uuid5("hello") use an empty namespace string:
        // checking them pins the hashing rule itself, not just one value.
        let bare = |s: &str| Uuid::new_v5(&Uuid::NAMESPACE_DNS, s.as_bytes()).to_string();
        assert_eq!(bare("SKU-123"), "c1f1203a-0b6a-5256-bea3-d770a2e910de");
        assert_eq!(bare("hello"), "9342d47a-1bab-5709-9869-c840b2eac501");
    }

    #[test]
    fn prefix_comes_before_the_sku() {
        // The TypeScript client concatenates the other way round; the seed used Python's order.
        assert_ne!(
            product_id("SKU-123"),
            Uuid::new_v5(&Uuid::NAMESPACE_DNS, b"SKU-123Product")
        );
    }
}
