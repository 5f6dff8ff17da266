//! Naming a difference between a row and its object.
//!
//! Whether a row and an object differ is decided by the pipeline's one diff,
//! [`reconcile::decide`](crate::pipeline::reconcile::decide): an object the pipeline would skip is
//! in sync, anything else differs. This module only names *how* it differs, for the report.

use crate::pipeline::reconcile::{self, Decision, Held};
use crate::pipeline::text::TextRule;
use crate::sink::{Product, StoredProduct};

/// What the table says one object must be: `None` in [`classify`] means no object at all.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub product: Product,
    /// The text its vector must be the embedding of (empty: no vector).
    pub text: String,
}

impl Expected {
    /// The product and text of a table row with this `sku`.
    pub fn of_row(rule: &TextRule, sku: String, row: &crate::event::Row) -> Expected {
        let product = rule.product_of(sku, row);
        Expected {
            text: rule.text(&product),
            product,
        }
    }
}

/// How an object differs from its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A row without an object.
    Missing,
    /// An object without a row (or one vecsync's id rule did not make).
    Extra,
    /// Properties differ (sku, name, description, price, the template's columns), or a vector
    /// is stored for an empty text.
    Stale,
    /// The text is not empty but the object has no vector.
    NoVector,
    /// The vector's length is not the embedder's dimension.
    WrongDimension,
    /// `--deep`: the stored vector is not the embedding of the object's text.
    VectorMismatch,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Missing,
        Kind::Extra,
        Kind::Stale,
        Kind::NoVector,
        Kind::WrongDimension,
        Kind::VectorMismatch,
    ];

    /// The name used in the summary and the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::Stale => "stale",
            Kind::NoVector => "no_vector",
            Kind::WrongDimension => "wrong_dimension",
            Kind::VectorMismatch => "vector_mismatch",
        }
    }
}

/// A stored object as the diff sees it.
pub fn held_of(stored: &StoredProduct) -> Held {
    Held {
        product: stored.product.clone(),
        vector: stored.vector.as_deref().map(Into::into),
    }
}

/// How `held` differs from `expected`, `None` when they agree (the pipeline would skip it).
pub fn classify(
    expected: Option<&Expected>,
    held: Option<&Held>,
    rule: &TextRule,
    dimension: usize,
) -> Option<Kind> {
    match (expected, held) {
        (None, None) => None,
        (None, Some(_)) => Some(Kind::Extra),
        (Some(_), None) => Some(Kind::Missing),
        (Some(e), Some(h)) => {
            if reconcile::decide(&e.product, &e.text, Some(h), rule, dimension) == Decision::Skip {
                return None;
            }
            if h.product != e.product {
                return Some(Kind::Stale);
            }
            Some(match &h.vector {
                None => Kind::NoVector,
                Some(v) if v.len() != dimension => Kind::WrongDimension,
                // Same properties, a vector of the right length, and still not skipped: the
                // text is empty and a vector is stored anyway.
                Some(_) => Kind::Stale,
            })
        }
    }
}

/// Cosine similarity; 0 when either vector is zero or the lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// Vectors at least this similar are the same embedding (float noise between runs and engines).
pub const SAME_VECTOR: f64 = 0.9999;

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(desc: Option<&str>) -> Expected {
        let product = Product {
            sku: "A".into(),
            name: Some("n".into()),
            description: desc.map(Into::into),
            price: serde_json::Number::from_f64(1.5),
            extra: Default::default(),
        };
        Expected {
            text: TextRule::default().text(&product),
            product,
        }
    }

    fn held(e: &Expected, vector: Option<&[f32]>) -> Held {
        Held {
            product: e.product.clone(),
            vector: vector.map(Into::into),
        }
    }

    fn c(e: Option<&Expected>, h: Option<&Held>) -> Option<Kind> {
        classify(e, h, &TextRule::default(), 2)
    }

    #[test]
    fn each_kind_is_named() {
        let e = expected(Some("shirt"));
        assert_eq!(c(Some(&e), Some(&held(&e, Some(&[1.0, 0.0])))), None);
        assert_eq!(c(None, None), None);
        assert_eq!(c(Some(&e), None), Some(Kind::Missing));
        assert_eq!(c(None, Some(&held(&e, None))), Some(Kind::Extra));
        assert_eq!(c(Some(&e), Some(&held(&e, None))), Some(Kind::NoVector));
        assert_eq!(
            c(Some(&e), Some(&held(&e, Some(&[1.0])))),
            Some(Kind::WrongDimension)
        );
        let mut other = held(&e, Some(&[1.0, 0.0]));
        other.product.price = serde_json::Number::from_f64(2.0);
        assert_eq!(c(Some(&e), Some(&other)), Some(Kind::Stale));
        other.product.description = Some("jeans".into());
        assert_eq!(c(Some(&e), Some(&other)), Some(Kind::Stale));
    }

    #[test]
    fn an_empty_text_with_a_vector_is_stale_and_without_one_in_sync() {
        let e = expected(None);
        assert_eq!(c(Some(&e), Some(&held(&e, None))), None);
        assert_eq!(
            c(Some(&e), Some(&held(&e, Some(&[1.0, 0.0])))),
            Some(Kind::Stale)
        );
    }

    #[test]
    fn cosine_of_same_and_other_vectors() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-12);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
