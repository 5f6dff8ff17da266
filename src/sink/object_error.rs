//! What a per-object failure inside a Weaviate batch answer *is*.
//!
//! `POST /v1/batch/objects` answers 200 and reports each object as SUCCESS or FAILED with a
//! message, and nothing else: no code. vecsync must decide from the message whether the object
//! itself can never be stored (a dead letter), or whether something around it is wrong for now
//! (hold the position and retry). The rule is fail-closed: only the validation errors Weaviate's
//! own source produces for an object's content are permanent (their texts are listed in
//! `CONTRACT.md`, "Types and validation"); every other message, known or not, is treated as
//! transient, because a transient error mistaken for a rejection loses a change for good while the
//! opposite only delays it.
//!
//! Two batch-wide rules sit on top (in [`super::weaviate`]): any `read-only` error fails the
//! whole batch (Weaviate 1.32.0 to 1.38.9 and 1.39.0 report only the first object of a read-only
//! shard as FAILED and the rest as SUCCESS although nothing was written), and a batch in which
//! every object failed with one and the same message is a class or cluster problem, not a
//! verdict on each object.

/// How to treat one FAILED object of a batch answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectFailure {
    /// Weaviate can never store this object as it is: dead-letter it.
    Content,
    /// Anything else: retry, holding the position.
    Transient,
}

/// Substrings of the messages Weaviate's validation produces for an object's own content
/// (`usecases/objects/validation`, `entities/schema`, `adapters/repos/db/vector`), as quoted in
/// CONTRACT.md. Matched case-sensitively: they are Weaviate's exact wording.
const CONTENT_ERRORS: &[&str] = &[
    "invalid number property",
    "invalid text property",
    "invalid integer property",
    "invalid boolean property",
    "invalid date property",
    "invalid uuid property",
    "requires an integer",
    "requires a float",
    "requires a string with a RFC3339 formatted date",
    "requires a string of UUID format",
    "new node has a vector with length",
    "object has an empty class",
    "has multi-tenancy enabled, but request was without tenant",
    "tenant not found",
];

/// Classify one FAILED object's message.
pub(crate) fn classify(message: &str) -> ObjectFailure {
    if CONTENT_ERRORS.iter().any(|known| message.contains(known)) {
        ObjectFailure::Content
    } else {
        ObjectFailure::Transient
    }
}

/// Whether a message says the shard is read-only (disk pressure, a maintenance switch), which
/// in the affected Weaviate versions also makes the other objects' SUCCESS untrustworthy.
pub(crate) fn is_read_only(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("read-only") || lower.contains("read only") || lower.contains("readonly")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_of_the_contract_are_content_errors() {
        for message in [
            "invalid number property 'price' on class 'Product': requires a float, the given value is '12.5'",
            "invalid text property 'name' on class 'Product': not a string, but json.Number",
            "new node has a vector with length 383. Existing nodes have vectors with length 384",
            "object has an empty class",
            "class Product has multi-tenancy enabled, but request was without tenant",
        ] {
            assert_eq!(classify(message), ObjectFailure::Content, "{message}");
        }
    }

    #[test]
    fn everything_else_is_transient_even_unknown_wording() {
        for message in [
            "store is read-only due to: disk usage too high",
            "shard is not ready",
            "cannot achieve consistency level \"QUORUM\": read error",
            "context deadline exceeded",
            "could not find index for class Product. It might have been deleted in the meantime",
            "leader changed during write",
            "shard Product_abc is being moved",
            "context canceled",
            "",
        ] {
            assert_eq!(classify(message), ObjectFailure::Transient, "{message}");
        }
    }

    #[test]
    fn read_only_in_any_spelling() {
        assert!(is_read_only(
            "store is read-only due to: disk usage too high"
        ));
        assert!(is_read_only("shard is READ ONLY"));
        assert!(!is_read_only("invalid number property"));
    }
}
