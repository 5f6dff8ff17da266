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
    }
}
