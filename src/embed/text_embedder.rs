//! [`TextEmbedder`]: the one embedder interface of vecsync, over the in-process model
//! ([`Embedder`]) and an OpenAI-compatible server ([`RemoteEmbedder`]).
//!
//! The pipeline, `vecsync embed` and `vecsync search` call only this type: it names the
//! embedding identity ([`TextEmbedder::identity`], the model half of the
//! [`Fingerprint`](super::fingerprint::Fingerprint)), probes the embedder at start
//! ([`TextEmbedder::probe`], checked against the index by [`check_fits`]) and embeds.
//!
//! # Error handling
//! [`EmbedCallError`] tells the caller what to do: [`EmbedCallError::Transient`] hold the
//! position and retry (a remote server down, 429, 5xx), [`EmbedCallError::Definite`] stop with
//! the message (bad model name, bad key, wrong URL, a broken model file), or, from
//! [`TextEmbedder::embed`], [`EmbedCallError::Text`]: that one text cannot be embedded (dead-letter
//! it). [`TextEmbedder::embed_each`] isolates such texts itself and reports them per text.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::fingerprint::ModelIdentity;
use super::remote::{PROBE_TEXT, RemoteEmbedder};
use super::{EmbedError, Embedder};

/// A vector, or why this one text has none.
pub type TextOutcome = Result<Vec<f32>, String>;

/// Why an embedder call failed, by what the caller must do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedCallError {
    /// Retry later (holding the position): the embedder is unreachable, overloaded or failing.
    #[error("{reason}")]
    Transient {
        reason: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: the operator must change something; the message says what.
    #[error("{0}")]
    Definite(String),
    /// Text number `index` of the call cannot be embedded; the others can.
    #[error("text {index} cannot be embedded: {reason}")]
    Text { index: usize, reason: String },
}

impl EmbedCallError {
    pub fn is_transient(&self) -> bool {
        matches!(self, EmbedCallError::Transient { .. })
    }

    /// The server's `Retry-After`, for the caller's backoff.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EmbedCallError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Either embedder. Cheap to clone.
#[derive(Debug, Clone)]
pub enum TextEmbedder {
    Local(Arc<Embedder>),
    Remote(RemoteEmbedder),
}

/// What the probe learnt.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub dimension: usize,
    /// The L2 norm of the probe's vector (1 for a normalising model).
    pub norm: f32,
}

impl Probe {
    fn of(vector: &[f32]) -> Probe {
        Probe {
            dimension: vector.len(),
            norm: vector.iter().map(|x| x * x).sum::<f32>().sqrt(),
        }
    }

    /// Whether the vectors are unit length, as cosine and dot distances need.
    pub fn is_normalized(&self) -> bool {
        (self.norm - 1.0).abs() <= 1e-3
    }
}

/// Why the embedder does not fit the index.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error(
        "the embedder makes {got}-dimension vectors but the index holds {want}-dimension ones: \
         point vecsync at the model the index was built with, or build a new index (--class)"
    )]
    Dimension { got: usize, want: usize },
    #[error(
        "the class's vector distance is `{distance}`, which needs unit-length vectors, but the \
         embedder's vectors have length {norm:.4}: use a model or server that normalises \
         (sentence-transformers' Normalize module; TEI's --normalize; infinity normalises), or \
         a class with distance l2-squared"
    )]
    NotNormalized { distance: String, norm: f32 },
}

/// Refuse an embedder whose probe does not fit the index: a dimension other than `dimension`
/// (when the index has one), or vectors that are not unit length while the class's `distance`
/// is cosine or dot (Weaviate's names: `cosine`, `dot`).
pub fn check_fits(
    probe: &Probe,
    dimension: Option<usize>,
    distance: Option<&str>,
) -> Result<(), FitError> {
    if let Some(want) = dimension.filter(|&w| w != probe.dimension) {
        return Err(FitError::Dimension {
            got: probe.dimension,
            want,
        });
    }
    let distance = distance.unwrap_or("cosine");
    if matches!(distance, "cosine" | "dot") && !probe.is_normalized() {
        return Err(FitError::NotNormalized {
            distance: distance.to_owned(),
            norm: probe.norm,
        });
    }
    Ok(())
}

impl TextEmbedder {
    /// Load the in-process model from `dir` (blocking work, off the async threads).
    pub async fn load_local(dir: &Path) -> Result<TextEmbedder, EmbedError> {
        let dir = dir.to_path_buf();
        let embedder = tokio::task::spawn_blocking(move || Embedder::load(&dir))
            .await
            .map_err(|e| EmbedError::Internal(format!("the model loader stopped: {e}")))??;
        Ok(TextEmbedder::Local(Arc::new(embedder)))
    }

    /// The vector length. For a remote embedder it is known once [`TextEmbedder::probe`]
    /// succeeded (0 before).
    pub fn dimension(&self) -> usize {
        match self {
            TextEmbedder::Local(e) => e.dimension(),
            TextEmbedder::Remote(r) => r.dimension().unwrap_or(0),
        }
    }

    /// The model half of the embedding fingerprint. Hashes the model files for the local
    /// model (blocking, a fraction of a second: call it once); for a remote embedder, call it
    /// after the probe (the dimension is part of it).
    pub fn identity(&self, model_dir: &Path) -> Result<ModelIdentity, EmbedError> {
        match self {
            TextEmbedder::Local(_) => ModelIdentity::of_model_dir(model_dir),
            TextEmbedder::Remote(r) => Ok(ModelIdentity::Remote {
                model: r.model().to_owned(),
                dimension: r.dimension().unwrap_or(0),
            }),
        }
    }

    /// Embed [`PROBE_TEXT`]: proves the embedder works (a remote one: that it serves the
    /// configured model) and learns its dimension and normalisation.
    pub async fn probe(&self) -> Result<Probe, EmbedCallError> {
        match self {
            TextEmbedder::Remote(r) => Ok(Probe::of(&r.probe().await?)),
            TextEmbedder::Local(_) => {
                let vector = self.embed(vec![PROBE_TEXT.to_owned()]).await.map_err(|e| {
                    EmbedCallError::Definite(format!("the model cannot embed a probe text: {e}"))
                })?;
                Ok(Probe::of(vector.first().map_or(&[][..], Vec::as_slice)))
            }
        }
    }

    /// One vector per text, in input order. The first text that cannot be embedded fails the
    /// call with [`EmbedCallError::Text`]; use [`TextEmbedder::embed_each`] to get the others.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedCallError> {
        self.embed_each(texts)
            .await?
            .into_iter()
            .enumerate()
            .map(|(index, r)| r.map_err(|reason| EmbedCallError::Text { index, reason }))
            .collect()
    }

    /// One outcome per text, in input order: a text that cannot be embedded gets its reason,
    /// the others their vectors. Errors are only [`EmbedCallError::Transient`] or
    /// [`EmbedCallError::Definite`].
    pub async fn embed_each(&self, texts: Vec<String>) -> Result<Vec<TextOutcome>, EmbedCallError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            TextEmbedder::Remote(r) => r.embed_each(&texts).await,
            TextEmbedder::Local(embedder) => Ok(local_each(embedder, texts).await),
        }
    }
}

/// All texts in one model call on the embedder's own threads (no async thread blocks); when
/// that fails, one by one, so a single bad text is isolated instead of failing the batch (every
/// local error is definite for its input).
async fn local_each(embedder: &Arc<Embedder>, texts: Vec<String>) -> Vec<TextOutcome> {
    let count = texts.len();
    match embedder.embed_owned(texts.clone()).await {
        Ok(vectors) => vectors.into_iter().map(Ok).collect(),
        Err(batch_error) => {
            tracing::warn!(error = %batch_error, texts = count, "batch embedding failed; embedding one by one");
            let mut out = Vec::with_capacity(count);
            for text in texts {
                out.push(
                    embedder
                        .embed_owned(vec![text])
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|mut v| v.pop().ok_or_else(|| "no vector returned".to_owned())),
                );
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(dimension: usize, norm: f32) -> Probe {
        Probe { dimension, norm }
    }

    #[test]
    fn a_fitting_probe_passes() {
        assert_eq!(
            check_fits(&probe(384, 1.0), Some(384), Some("cosine")),
            Ok(())
        );
        assert_eq!(check_fits(&probe(384, 0.9995), None, None), Ok(()));
        // l2 does not need unit vectors.
        assert_eq!(
            check_fits(&probe(8, 3.0), Some(8), Some("l2-squared")),
            Ok(())
        );
    }

    #[test]
    fn another_dimension_is_refused() {
        let e = check_fits(&probe(768, 1.0), Some(384), Some("cosine")).expect_err("refused");
        assert_eq!(
            e,
            FitError::Dimension {
                got: 768,
                want: 384
            }
        );
        assert!(e.to_string().contains("768-dimension"), "{e}");
    }

    #[test]
    fn unnormalised_vectors_are_refused_for_cosine_and_dot() {
        for distance in ["cosine", "dot"] {
            let e = check_fits(&probe(384, 7.5), Some(384), Some(distance)).expect_err(distance);
            assert!(matches!(e, FitError::NotNormalized { .. }), "{e:?}");
            assert!(e.to_string().contains(distance), "{e}");
        }
    }

    #[test]
    fn errors_say_what_to_do() {
        let t = EmbedCallError::Transient {
            reason: "down".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert!(t.is_transient());
        assert_eq!(t.retry_after(), Some(Duration::from_secs(2)));
        assert!(!EmbedCallError::Definite("bad key".into()).is_transient());
        let text = EmbedCallError::Text {
            index: 3,
            reason: "too long".into(),
        };
        assert_eq!(text.to_string(), "text 3 cannot be embedded: too long");
    }
}
