//! What the batches in flight will leave in Weaviate, so a later batch can be prepared while an
//! earlier one is still being written, without ever overtaking it.
//!
//! The preparing stage records the final state of every object a batch writes or deletes before
//! handing the batch on; the writing stage forgets a batch's entries once Weaviate confirmed it.
//! Batches are written one after another in stream order, so for an object with an entry here,
//! the entry is what Weaviate will hold when the next batch is written; for an object without
//! one, every write is confirmed and Weaviate's answer to a fetch is exact. A truncate in flight
//! makes every object without an entry count as absent.

use std::collections::HashMap;
use std::sync::Mutex;

use super::reconcile::Held;

#[derive(Debug, Default)]
struct State {
    /// sku -> (batch, the state after it: `None` deleted).
    entries: HashMap<String, (u64, Option<Held>)>,
    /// The newest batch in flight that truncates the class.
    truncate: Option<u64>,
}

/// Shared between the preparing and the writing stage.
#[derive(Debug, Default)]
pub struct InFlight {
    state: Mutex<State>,
}

/// What is known about an object without asking Weaviate.
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    /// A batch in flight leaves this (`None`: no object).
    Pending(Option<Held>),
    /// Nothing in flight touches it: ask Weaviate.
    AskWeaviate,
}

impl InFlight {
    pub fn lookup(&self, sku: &str) -> Known {
        let state = self.lock();
        match state.entries.get(sku) {
            Some((_, held)) => Known::Pending(held.clone()),
            None if state.truncate.is_some() => Known::Pending(None),
            None => Known::AskWeaviate,
        }
    }

    /// Batch `batch` leaves `held` for `sku`.
    pub fn record(&self, batch: u64, sku: String, held: Option<Held>) {
        self.lock().entries.insert(sku, (batch, held));
    }

    /// Batch `batch` truncates the class before its writes: every older entry is moot.
    pub fn truncating(&self, batch: u64) {
        let mut state = self.lock();
        state.entries.clear();
        state.truncate = Some(batch);
    }

    /// Weaviate confirmed batch `batch` (or rejected some of its objects for good): forget what
    /// it wrote, Weaviate now answers for it.
    pub fn confirmed(&self, batch: u64) {
        let mut state = self.lock();
        state.entries.retain(|_, (b, _)| *b != batch);
        if state.truncate == Some(batch) {
            state.truncate = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Product;

    fn held(desc: &str) -> Held {
        Held {
            product: Product {
                sku: "A".into(),
                description: Some(desc.into()),
                ..Product::default()
            },
            vector: Some(vec![1.0].into()),
        }
    }

    #[test]
    fn the_newest_batch_in_flight_answers_until_confirmed() {
        let f = InFlight::default();
        assert_eq!(f.lookup("A"), Known::AskWeaviate);
        f.record(1, "A".into(), Some(held("one")));
        f.record(2, "A".into(), Some(held("two")));
        assert_eq!(f.lookup("A"), Known::Pending(Some(held("two"))));
        // Batch 1 confirmed: batch 2's entry stays.
        f.confirmed(1);
        assert_eq!(f.lookup("A"), Known::Pending(Some(held("two"))));
        f.confirmed(2);
        assert_eq!(f.lookup("A"), Known::AskWeaviate);
        f.record(3, "A".into(), None);
        assert_eq!(f.lookup("A"), Known::Pending(None));
    }

    #[test]
    fn a_truncate_in_flight_makes_everything_absent() {
        let f = InFlight::default();
        f.record(1, "A".into(), Some(held("one")));
        f.truncating(2);
        assert_eq!(f.lookup("A"), Known::Pending(None));
        assert_eq!(f.lookup("B"), Known::Pending(None));
        f.record(2, "B".into(), Some(held("b")));
        f.confirmed(2);
        assert_eq!(f.lookup("A"), Known::AskWeaviate);
        assert_eq!(f.lookup("B"), Known::AskWeaviate);
    }
}
