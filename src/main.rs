//! The `vecsync` binary: parse the command line, start logging, call the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use vecsync::config::RunArgs;
use vecsync::telemetry::LogFormat;

/// Keeps a Weaviate vector index in sync with a MariaDB table by tailing its binlog.
#[derive(Debug, Parser)]
#[command(name = "vecsync", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr (the level comes from LOG_LEVEL, e.g. info or vecsync=debug).
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replicate the table into Weaviate until SIGTERM/SIGINT.
    Run(Box<RunArgs>),
    /// Inspect the checkpoint file.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Embed texts with the sentence-transformers model: one JSON object per text,
    /// {"text": ..., "vector": [...]}, in input order.
    Embed(EmbedArgs),
    /// Embed a query with the same model and print the nearest products with their distance.
    Search(SearchArgs),
}

#[derive(Debug, clap::Args)]
struct SearchArgs {
    /// What a shopper would type, e.g. "summer outdoor party wear".
    query: String,
    /// How many products to print.
    #[arg(long, default_value_t = 5)]
    limit: usize,
    /// The sentence-transformers model directory (see scripts/fetch-model).
    #[arg(long, env = "VECSYNC_MODEL", default_value = vecsync::embed::DEFAULT_MODEL_DIR)]
    model: std::path::PathBuf,
    /// Weaviate's REST endpoint.
    #[arg(long, env = "WEAVIATE_URL", default_value = "http://localhost:8080")]
    weaviate_url: String,
    /// Weaviate API key, sent as Authorization: Bearer.
    #[arg(long, env = "WEAVIATE_API_KEY", hide_env_values = true)]
    weaviate_api_key: Option<String>,
    /// File whose first line is the Weaviate API key; an empty file means no key.
    #[arg(
        long,
        env = "WEAVIATE_API_KEY_FILE",
        conflicts_with = "weaviate_api_key"
    )]
    weaviate_api_key_file: Option<std::path::PathBuf>,
    /// Weaviate class to search.
    #[arg(long, env = "VECSYNC_CLASS", default_value = "Product")]
    class: String,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct EmbedArgs {
    /// The sentence-transformers model directory (see scripts/fetch-model).
    #[arg(long, env = "VECSYNC_MODEL", default_value = vecsync::embed::DEFAULT_MODEL_DIR)]
    model: std::path::PathBuf,
    /// Read texts from this file, one per line ("-" for standard input).
    #[arg(long, conflicts_with = "texts")]
    file: Option<std::path::PathBuf>,
    /// Print speed figures (sentences/s, peak RSS) as JSON instead of the vectors.
    #[arg(long)]
    bench: bool,
    /// Worker threads (default: one per core).
    #[arg(long, env = "VECSYNC_EMBED_THREADS", default_value_t = 0)]
    threads: usize,
    /// Most texts per batch (texts of similar length are batched together).
    #[arg(long, default_value_t = vecsync::embed::EmbedOptions::default().max_batch_texts)]
    batch_size: usize,
    /// Most padded tokens per batch (bounds a batch's working memory; smaller batches stay in cache).
    #[arg(long, default_value_t = vecsync::embed::EmbedOptions::default().max_batch_tokens)]
    batch_tokens: usize,
    /// Texts to embed.
    #[arg(required_unless_present = "file")]
    texts: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum CheckpointCommand {
    /// Print the stored GTID position and when it was written.
    Show {
        /// The checkpoint file.
        #[arg(long, env = "VECSYNC_CHECKPOINT", default_value = "vecsync.checkpoint")]
        checkpoint: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vecsync: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    vecsync::telemetry::init_logging(cli.log_format);
    match cli.command {
        Command::Search(args) => {
            let weaviate_api_key = match (args.weaviate_api_key, &args.weaviate_api_key_file) {
                (Some(key), _) => Some(vecsync::secret::Secret::new(key)),
                (None, Some(path)) => {
                    Some(vecsync::config::read_secret_file(path).with_context(|| {
                        format!("cannot read the Weaviate API key file {}", path.display())
                    })?)
                }
                (None, None) => None,
            }
            .filter(|k| !k.expose().is_empty());
            let request = vecsync::search::SearchRequest {
                query: args.query,
                limit: args.limit,
                model: args.model,
                weaviate_url: args.weaviate_url,
                weaviate_api_key,
                class: args.class,
            };
            let hits =
                tokio::runtime::Runtime::new()?.block_on(vecsync::search::search(&request))?;
            for hit in hits {
                let p = &hit.product;
                if args.json {
                    let line = serde_json::json!({
                        "distance": hit.distance,
                        "id": hit.id,
                        "sku": p.sku,
                        "name": p.name,
                        "description": p.description,
                        "price": p.price,
                    });
                    println!("{line}");
                } else {
                    let price = p
                        .price
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{:.4}  {}  {}  {}",
                        hit.distance,
                        p.sku,
                        p.name.as_deref().unwrap_or("-"),
                        price
                    );
                }
            }
            Ok(())
        }
        Command::Run(args) => {
            let config = args.into_config()?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let cancel = CancellationToken::new();
                tokio::spawn(cancel_on_signal(cancel.clone()));
                vecsync::pipeline::run(config, cancel).await
            })?;
            Ok(())
        }
        Command::Checkpoint(CheckpointCommand::Show { checkpoint }) => {
            match vecsync::checkpoint::read(&checkpoint)? {
                Some(data) => println!("{}", serde_json::to_string_pretty(&data)?),
                None => anyhow::bail!("no checkpoint at {}", checkpoint.display()),
            }
            Ok(())
        }
        Command::Embed(args) => {
            let input = match args.file {
                Some(path) => vecsync::embed::EmbedInput::File(path),
                None => vecsync::embed::EmbedInput::Texts(args.texts),
            };
            let cmd = vecsync::embed::EmbedCommand {
                model_dir: args.model,
                input,
                bench: args.bench,
                options: vecsync::embed::EmbedOptions {
                    threads: args.threads,
                    max_batch_texts: args.batch_size,
                    max_batch_tokens: args.batch_tokens,
                },
            };
            vecsync::embed::run_command(&cmd, &mut std::io::stdout().lock())?;
            Ok(())
        }
    }
}

/// SIGTERM or SIGINT cancels the pipeline, which drains and checkpoints; a second signal exits
/// at once.
async fn cancel_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!(
            "cannot install signal handlers; SIGTERM will kill vecsync without draining"
        );
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing the in-flight batch, then exiting"),
        _ = int.recv() => tracing::info!("SIGINT: finishing the in-flight batch, then exiting"),
    }
    vecsync::notify::stopping();
    cancel.cancel();
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::warn!("second signal: exiting without draining");
    std::process::exit(130);
}
