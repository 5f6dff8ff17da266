//! `weaviate-test-server`: the Weaviate stand-in as a process, for benchmark scripts and manual
//! runs. Prints `listening on http://127.0.0.1:<port>` once it accepts connections, then serves
//! until killed.

use clap::Parser;
use weaviate_test_server::{ServerConfig, TestServer};

/// A Weaviate-compatible in-memory server built to Weaviate's OpenAPI contract (tests only).
#[derive(Debug, Parser)]
#[command(name = "weaviate-test-server", version, about)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer <key>` (repeat for several keys).
    #[arg(
        long = "api-key",
        env = "AUTHENTICATION_APIKEY_ALLOWED_KEYS",
        value_delimiter = ','
    )]
    api_keys: Vec<String>,
    /// Most objects one batch delete removes.
    #[arg(long, env = "QUERY_MAXIMUM_RESULTS", default_value_t = 10_000)]
    query_maximum_results: usize,
    /// Turn auto-schema off.
    #[arg(long)]
    no_auto_schema: bool,
    /// Also listen on this port (0 picks a free one) for clients that need a separate gRPC
    /// port: every gRPC call there is refused with UNIMPLEMENTED. Printed on a second line as
    /// `grpc refused on 127.0.0.1:<port>`.
    #[arg(long)]
    grpc_port: Option<u16>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let config = ServerConfig {
        api_keys: args.api_keys,
        query_maximum_results: args.query_maximum_results,
        auto_schema: !args.no_auto_schema,
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(config, args.port).await?;
    println!("listening on {}", server.url());
    if let Some(port) = args.grpc_port {
        println!("grpc refused on {}", server.listen_also(port).await?);
    }
    tokio::signal::ctrl_c().await?;
    drop(server);
    Ok(())
}
