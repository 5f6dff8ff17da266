//! Turns texts into token ids exactly as sentence-transformers does before the transformer.
//!
//! sentence-transformers strips each text, lowercases it when `do_lower_case` is set in
//! `sentence_bert_config.json`, and calls the Hugging Face tokenizer with truncation at its own
//! `max_seq_length` and padding to the longest text of the batch. The `tokenizer.json` of
//! all-MiniLM-L6-v2 carries different settings (truncate at 128, pad every input to 128) that
//! sentence-transformers overrides, so they are replaced here: no padding at all (batches are
//! padded later, to their own longest text) and truncation at `max_seq_length`.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::EmbedError;

/// The tokenizer of a model directory, with sentence-transformers' limits.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    lowercase: bool,
}

impl TextTokenizer {
    /// Load `tokenizer.json`, truncating at `max_seq_length` tokens ([CLS] and [SEP] included).
    pub fn from_file(
        path: &Path,
        max_seq_length: usize,
        lowercase: bool,
    ) -> Result<TextTokenizer, EmbedError> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| EmbedError::Tokenizer {
            reason: format!("cannot load {}: {e}", path.display()),
        })?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| EmbedError::Tokenizer {
                reason: format!("cannot truncate at {max_seq_length} tokens: {e}"),
            })?;
        Ok(TextTokenizer { inner, lowercase })
    }

    /// The token ids of `text`, special tokens included, truncated, not padded.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, EmbedError> {
        // Python's str.strip(), which sentence-transformers applies, removes the same Unicode
        // whitespace as Rust's trim(); the tokenizer would drop it anyway, this keeps parity
        // obvious.
        let text = text.trim();
        let lowered;
        let text = if self.lowercase {
            lowered = text.to_lowercase();
            lowered.as_str()
        } else {
            text
        };
        let encoding = self
            .inner
            .encode_fast(text, true)
            .map_err(|e| EmbedError::Tokenizer {
                reason: format!("cannot tokenize a text of {} bytes: {e}", text.len()),
            })?;
        Ok(encoding.get_ids().iter().map(|&id| i64::from(id)).collect())
    }
}
