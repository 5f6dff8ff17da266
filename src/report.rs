//! How errors are reported: every cause once.
//!
//! vecsync's errors carry the causes they wrap in their own message (so a log line with
//! `%error` says everything) and do not also expose them as `source()`, which would print them a
//! second time in `{:#}` chains. [`causes`] renders a foreign error (reqwest, I/O) with its whole
//! chain, skipping a cause whose text its parent already shows.

use std::error::Error;

/// `error` and its sources, joined by `": "`, each text once.
pub fn causes(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle says: inner")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn each_cause_once_in_order() {
        let e = Outer(Middle(std::io::Error::other("inner")));
        assert_eq!(causes(&e), "outer: middle says: inner");
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        assert_eq!(causes(&io), "denied");
    }
}
