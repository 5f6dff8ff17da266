//! Where change events end up: the seed's Weaviate class `Product`, written through Weaviate's REST
//! API so that whatever searched the Python pipeline's index keeps working.
//!
//! The work lives in files named after what they do:
//!
//! - [`weaviate`]: [`WeaviateSink`], the client the pipeline calls (`ensure_schema`, `apply`,
//!   `truncate`, `get`, `near_vector`);
//! - [`alias`]: collection aliases (`/v1/aliases`), the re-index switch;
//! - [`config`]: [`WeaviateConfig`], the redacting [`ApiKey`] and [`ConsistencyLevel`];
//! - [`schema`]: the class definition shipped in `schema/product.json` and the compatibility check
//!   run against a class that already exists;
//! - [`product`]: the object written for a product ([`Product`], [`WriteOp`], [`OpOutcome`]) and
//!   the exact DECIMAL-to-JSON-number conversion of the price;
//! - [`fetch`]: what Weaviate holds for many ids in one request, and the cursor listing;
//! - `object_error`: what a per-object failure in a batch answer is (content or transient);
//! - [`ids`]: the deterministic object id the seed's Python client used;
//! - `record`: which embedding built the class, kept in its description;
//! - [`retry`]: capped exponential backoff with jitter;
//! - [`search`]: the one place that speaks GraphQL `nearVector` (deprecated by Weaviate, so it
//!   stays isolated and can move to the newer search API);
//! - [`error`]: [`SinkError`], split into transient and definite failures.
//!
//! # Error handling
//! Every call returns [`SinkError`]. [`SinkError::is_transient`] tells the pipeline whether to
//! keep the database position and retry (Weaviate down, timeouts, 429, 5xx) or to stop with the
//! error's message (bad API key, incompatible class). A single object Weaviate rejects for good is
//! not an error of the call: it comes back as [`OpOutcome::Rejected`] with Weaviate's message.

pub mod alias;
pub mod config;
pub mod error;
pub mod fetch;
pub mod ids;
mod object_error;
pub mod product;
mod record;
pub mod retry;
pub mod schema;
pub mod search;
pub mod weaviate;

pub use config::{ApiKey, ConsistencyLevel, WeaviateConfig};
pub use error::SinkError;
pub use ids::{ID_PREFIX, product_id};
pub use product::{
    CORE_PROPERTIES, DecimalError, OpOutcome, Product, StoredProduct, WriteOp,
    decimal_to_json_number,
};
pub use retry::RetryPolicy;
pub use schema::{ClassSchema, SchemaStatus};
pub use search::{FilterOp, FilterValue, HybridQuery, PropertyFilter, SearchHit, SearchQuery};
pub use weaviate::WeaviateSink;
