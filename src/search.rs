//! `vecsync search`: what a shopper's query finds. The query is embedded with the same embedder
//! as the products (the in-process model or the remote server), then Weaviate returns the nearest
//! products by cosine distance.
//!
//! The Weaviate side of this lives in [`crate::sink::search`], the one place that speaks the
//! (deprecated) GraphQL `nearVector` query.

use crate::embed::args::OpenError;
use crate::embed::{EmbedCallError, EmbedderConfig};
use crate::secret::Secret;
use crate::sink::{SearchHit, SinkError, WeaviateConfig, WeaviateSink};

/// What to search and where.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub limit: usize,
    pub embedder: EmbedderConfig,
    pub weaviate_url: String,
    pub weaviate_api_key: Option<Secret>,
    pub class: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot embed the query: {0}")]
    Embed(#[from] EmbedCallError),
    #[error(transparent)]
    Weaviate(#[from] SinkError),
}

/// The `limit` products nearest to the query, nearest first.
pub async fn search(request: &SearchRequest) -> Result<Vec<SearchHit>, SearchError> {
    let embedder = request.embedder.open().await?;
    let vector = embedder
        .embed(vec![request.query.clone()])
        .await?
        .pop()
        .unwrap_or_default();
    let mut config = WeaviateConfig::new(request.weaviate_url.clone());
    config.api_key = request.weaviate_api_key.clone();
    config.class = request.class.clone();
    config.vector_dimensions = vector.len().max(1);
    let sink = WeaviateSink::new(config)?;
    Ok(sink.near_vector(&vector, request.limit).await?)
}
