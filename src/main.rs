//! The `vecsync` binary: parse the command line, start logging, call the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keeps a Weaviate vector index in sync with a MariaDB table by tailing its binlog.
#[derive(Debug, Parser)]
#[command(name = "vecsync", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect the checkpoint file.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Embed texts with the sentence-transformers model: one JSON object per text,
    /// {"text": ..., "vector": [...]}, in input order.
    Embed(EmbedArgs),
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
    match cli.command {
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
