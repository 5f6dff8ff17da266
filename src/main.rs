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
    /// Compare the table with the index (missing, extra and stale objects, vectors, the
    /// embedding fingerprint), also while `vecsync run` runs; exit 0 in sync, 1 drift, 2 error.
    Verify(Box<vecsync::verify::VerifyArgs>),
}

#[derive(Debug, clap::Args)]
struct SearchArgs {
    /// What a shopper would type, e.g. "summer outdoor party wear".
    query: String,
    /// How many products to print.
    #[arg(long, default_value_t = 5)]
    limit: usize,
    /// The embedder the products were embedded with (the query must be embedded alike).
    #[command(flatten)]
    embedder: vecsync::embed::EmbedderArgs,
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
    /// Rank by keywords (BM25 on name and description) and the vector together: Weaviate's
    /// hybrid query.
    #[arg(long)]
    hybrid: bool,
    /// Hybrid weight of the vector side, 0 (keywords only) to 1 (vector only); Weaviate's
    /// default is 0.75.
    #[arg(long, requires = "hybrid")]
    alpha: Option<f32>,
    /// Only products matching these conditions, e.g. 'price<50' or "price>=10 and name='Red
    /// Shoe'": = != < <= > >= on sku, name, description and price, joined by `,` or `and`;
    /// may be repeated.
    #[arg(long = "where", value_name = "CONDITIONS")]
    filters: Vec<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct EmbedArgs {
    /// The in-process model or a remote embedder, and the text template.
    #[command(flatten)]
    embedder: vecsync::embed::EmbedderArgs,
    /// Print the embedding identity as JSON (fingerprint, dimension, model files' sha256 or the
    /// remote model, template) instead of embedding.
    #[arg(long, conflicts_with_all = ["file", "bench", "texts"])]
    info: bool,
    /// Read texts from this file, one per line ("-" for standard input).
    #[arg(long, conflicts_with = "texts")]
    file: Option<std::path::PathBuf>,
    /// Print speed figures (sentences/s, peak RSS) of the in-process model as JSON instead of
    /// the vectors.
    #[arg(long, conflicts_with = "embedder")]
    bench: bool,
    /// Worker threads (default: one per core).
    #[arg(long, env = "VECSYNC_EMBED_THREADS", default_value_t = 0)]
    threads: usize,
    /// Most texts per batch (texts of similar length are batched together).
    #[arg(long, default_value_t = vecsync::embed::EmbedOptions::default().max_batch_texts)]
    batch_size: usize,
    /// Most tokens per batch (bounds a batch's working memory; smaller batches stay in cache).
    #[arg(long, default_value_t = vecsync::embed::EmbedOptions::default().max_batch_tokens)]
    batch_tokens: usize,
    /// Which implementation runs the transformer: vecsync's encoder (native) or tract's graph
    /// (graph, the reference for benchmarks).
    #[arg(long, value_enum, default_value = "native")]
    engine: EngineArg,
    /// With --bench: embed the input this many times, and also report the best and median run.
    #[arg(long, default_value_t = 1, requires = "bench")]
    repeat: usize,
    /// Texts to embed.
    #[arg(required_unless_present_any = ["file", "info"])]
    texts: Vec<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EngineArg {
    Native,
    Graph,
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
    if let Command::Verify(args) = cli.command {
        vecsync::telemetry::init_logging(cli.log_format);
        return verify(*args);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vecsync: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `vecsync verify`: 0 in sync, 1 drift found, 2 error.
fn verify(args: vecsync::verify::VerifyArgs) -> ExitCode {
    let json = args.json;
    let checked = (|| -> anyhow::Result<vecsync::verify::report::Report> {
        let options = args.into_options()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        Ok(runtime.block_on(vecsync::verify::run(options))?)
    })();
    match checked {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("vecsync: error: cannot print the report: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print!("{}", report.summary());
            }
            if report.in_sync {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("vecsync: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    vecsync::telemetry::init_logging(cli.log_format);
    match cli.command {
        Command::Search(args) => {
            let mut filters = Vec::new();
            for text in &args.filters {
                filters.extend(vecsync::search::parse_where(text)?);
            }
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
                embedder: args.embedder.into_config()?,
                weaviate_url: args.weaviate_url,
                weaviate_api_key,
                class: args.class,
                hybrid: args.hybrid,
                alpha: args.alpha,
                filters,
            };
            let hits =
                tokio::runtime::Runtime::new()?.block_on(vecsync::search::search(&request))?;
            for hit in hits {
                let p = &hit.product;
                if args.json {
                    let mut line = serde_json::json!({
                        "id": hit.id,
                        "sku": p.sku,
                        "name": p.name,
                        "description": p.description,
                        "price": p.price,
                    });
                    // A vector search ranks by distance, a hybrid one by score.
                    if let Some(d) = hit.distance {
                        line["distance"] = d.into();
                    }
                    if let Some(s) = hit.score {
                        line["score"] = s.into();
                    }
                    println!("{line}");
                } else {
                    let price = p
                        .price
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{:.4}  {}  {}  {}",
                        hit.distance.or(hit.score).unwrap_or(f32::NAN),
                        p.sku,
                        p.name.as_deref().unwrap_or("-"),
                        price
                    );
                }
            }
            Ok(())
        }
        // `main` runs verify itself (its exit codes are its own).
        Command::Verify(_) => anyhow::bail!("internal error: verify is run by main"),
        Command::Run(args) => {
            let config = args.into_config()?;
            // The in-process model keeps one thread per core busy while it embeds; the async
            // threads mostly wait on the network, so they get the cores it leaves (at least one)
            // instead of fighting it for them.
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            let workers = if config.embedder.is_local() {
                vecsync::embed::runtime_worker_threads(cores, cores)
            } else {
                cores
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()?;
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
            let embedder = args.embedder.into_config()?;
            if args.info {
                let info = tokio::runtime::Runtime::new()?.block_on(embedder.info())?;
                println!("{}", serde_json::to_string_pretty(&info)?);
                return Ok(());
            }
            let input = match args.file {
                Some(path) => vecsync::embed::EmbedInput::File(path),
                None => vecsync::embed::EmbedInput::Texts(args.texts),
            };
            let model_dir = match &embedder.source {
                vecsync::embed::EmbedderSource::Local(dir) => dir.clone(),
                vecsync::embed::EmbedderSource::Remote(_) => {
                    tokio::runtime::Runtime::new()?
                        .block_on(embedder.embed_command(&input, &mut std::io::stdout().lock()))?;
                    return Ok(());
                }
            };
            let cmd = vecsync::embed::EmbedCommand {
                model_dir,
                input,
                bench: args.bench,
                options: vecsync::embed::EmbedOptions {
                    threads: args.threads,
                    max_batch_texts: args.batch_size,
                    max_batch_tokens: args.batch_tokens,
                },
                repeat: args.repeat,
                engine: match args.engine {
                    EngineArg::Native => vecsync::embed::Engine::Native,
                    EngineArg::Graph => vecsync::embed::Engine::Graph,
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
