//! The one diff against the index: given the state a product must end in and what Weaviate holds
//! for it, what must be written, and whether the model has to run.
//!
//! Used by the stream, the snapshot (which skips rows Weaviate already holds exactly), the bulk
//! path for updates that keep their vector, `vecsync verify` and `--repair`.
//!
//! # No stale vectors
//! vecsync never PATCHes. Every write is a whole object carrying a vector that belongs to the
//! text it carries: the stored vector is reused only when the text the stored object embeds
//! (rebuilt from its own properties) is exactly the text to embed now, and it has the right
//! length. A write Weaviate rejected, an embedding that failed, a restart: none of them can leave
//! a description with another description's vector, because the next write compares against what
//! Weaviate actually holds.

use std::sync::Arc;

use crate::sink::Product;

use super::text::TextRule;

/// A vector shared between the in-flight state and the write that carries it.
pub type Vector = Arc<[f32]>;

/// What Weaviate holds for one object (or will hold once the writes in flight are confirmed).
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub product: Product,
    pub vector: Option<Vector>,
}

/// What to do for one product that must exist.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Weaviate already holds exactly this object: write nothing.
    Skip,
    /// Write the object with no vector (empty text).
    WriteWithoutVector,
    /// Write the object with the vector Weaviate already has for this very text.
    WriteWithVector(Vector),
    /// The text has no vector yet: embed it, then write.
    Embed,
}

/// Decide for `product`, whose vector must be the embedding of `text`, given `held` (`None`:
/// no such object).
pub fn decide(
    product: &Product,
    text: &str,
    held: Option<&Held>,
    rule: &TextRule,
    dimension: usize,
) -> Decision {
    if text.is_empty() {
        return match held {
            Some(h) if h.vector.is_none() && h.product == *product => Decision::Skip,
            _ => Decision::WriteWithoutVector,
        };
    }
    let Some(held) = held else {
        return Decision::Embed;
    };
    let usable = held
        .vector
        .as_ref()
        .filter(|v| v.len() == dimension && rule.render_stored(&held.product) == text);
    match usable {
        Some(_) if held.product == *product => Decision::Skip,
        Some(v) => Decision::WriteWithVector(v.clone()),
        None => Decision::Embed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(desc: Option<&str>, price: f64) -> Product {
        Product {
            sku: "A".into(),
            name: Some("n".into()),
            description: desc.map(Into::into),
            price: serde_json::Number::from_f64(price),
            extra: Default::default(),
        }
    }

    fn held(desc: Option<&str>, price: f64, vector: Option<&[f32]>) -> Held {
        Held {
            product: product(desc, price),
            vector: vector.map(Into::into),
        }
    }

    fn d(p: &Product, text: &str, h: Option<&Held>) -> Decision {
        decide(p, text, h, &TextRule::default(), 2)
    }

    #[test]
    fn identical_objects_are_skipped() {
        let p = product(Some("shirt"), 1.0);
        assert_eq!(
            d(
                &p,
                "shirt",
                Some(&held(Some("shirt"), 1.0, Some(&[1.0, 0.0])))
            ),
            Decision::Skip
        );
        let p = product(None, 1.0);
        assert_eq!(d(&p, "", Some(&held(None, 1.0, None))), Decision::Skip);
    }

    #[test]
    fn a_price_change_reuses_the_stored_vector() {
        let p = product(Some("shirt"), 2.0);
        let h = held(Some("shirt"), 1.0, Some(&[1.0, 0.0]));
        assert_eq!(
            d(&p, "shirt", Some(&h)),
            Decision::WriteWithVector(vec![1.0, 0.0].into())
        );
    }

    #[test]
    fn another_text_missing_object_no_vector_or_wrong_length_embed() {
        let p = product(Some("new"), 1.0);
        assert_eq!(
            d(&p, "new", Some(&held(Some("old"), 1.0, Some(&[1.0, 0.0])))),
            Decision::Embed
        );
        assert_eq!(d(&p, "new", None), Decision::Embed);
        assert_eq!(
            d(&p, "new", Some(&held(Some("new"), 1.0, None))),
            Decision::Embed
        );
        assert_eq!(
            d(&p, "new", Some(&held(Some("new"), 1.0, Some(&[1.0])))),
            Decision::Embed
        );
    }

    #[test]
    fn an_empty_text_writes_no_vector_even_over_a_stored_one() {
        let p = product(Some(""), 1.0);
        assert_eq!(
            d(&p, "", Some(&held(Some("old"), 1.0, Some(&[1.0, 0.0])))),
            Decision::WriteWithoutVector
        );
        assert_eq!(d(&p, "", None), Decision::WriteWithoutVector);
    }
}
