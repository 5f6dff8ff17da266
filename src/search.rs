//! `vecsync search`: what a shopper's query finds. The query is embedded with the same model as
//! the products, then Weaviate returns the nearest products by cosine distance.
//!
//! The Weaviate side of this lives in [`crate::sink::search`], the one place that speaks the
//! (deprecated) GraphQL `nearVector` query.

use std::path::PathBuf;

use crate::embed::{EmbedError, Embedder};
use crate::secret::Secret;
use crate::sink::{SearchHit, SinkError, WeaviateConfig, WeaviateSink};

/// What to search and where.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub limit: usize,
    pub model: PathBuf,
    pub weaviate_url: String,
    pub weaviate_api_key: Option<Secret>,
    pub class: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Weaviate(#[from] SinkError),
    #[error("the embedding worker stopped: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

/// The `limit` products nearest to the query, nearest first.
pub async fn search(request: &SearchRequest) -> Result<Vec<SearchHit>, SearchError> {
    let model = request.model.clone();
    let query = request.query.clone();
    let vector = tokio::task::spawn_blocking(move || -> Result<Vec<f32>, EmbedError> {
        let embedder = Embedder::load(&model)?;
        let mut vectors = embedder.embed(&[query.as_str()])?;
        Ok(vectors.pop().unwrap_or_default())
    })
    .await??;
    let mut config = WeaviateConfig::new(request.weaviate_url.clone());
    config.api_key = request.weaviate_api_key.clone();
    config.class = request.class.clone();
    config.vector_dimensions = vector.len();
    let sink = WeaviateSink::new(config)?;
    Ok(sink.near_vector(&vector, request.limit).await?)
}
