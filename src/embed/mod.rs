//! Sentence embeddings with tract (issue 3).
