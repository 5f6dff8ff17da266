//! `vecsync embed`: embed texts from the command line or a file, or measure the speed.
//!
//! Prints one JSON object per input text, in input order: `{"text": ..., "vector": [...]}`.
//! With `bench` it prints a single JSON summary instead (texts, tokens, seconds, sentences per
//! second, CPU seconds, the model's FLOPs, threads, model load time, peak RSS), which
//! `scripts/bench-embed` reads.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::{EmbedError, EmbedOptions, Embedder, Engine};

/// Where the texts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedInput {
    /// Texts given directly.
    Texts(Vec<String>),
    /// A file with one text per line (`-` reads standard input).
    File(PathBuf),
}

/// A parsed `vecsync embed` invocation.
#[derive(Debug, Clone)]
pub struct EmbedCommand {
    /// The sentence-transformers model directory.
    pub model_dir: PathBuf,
    /// The texts to embed.
    pub input: EmbedInput,
    /// Report speed instead of printing vectors.
    pub bench: bool,
    /// Loader options (threads, batch limits).
    pub options: EmbedOptions,
    /// Which implementation runs the transformer.
    pub engine: Engine,
    /// With `bench`: embed the input this many times and report the best and median run too
    /// (the best of many short runs is what an idle machine would do).
    pub repeat: usize,
}

/// Why `vecsync embed` failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedCommandError {
    /// Loading the model or embedding failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The input file could not be read.
    #[error("cannot read texts from {}", path.display())]
    ReadInput {
        /// The input file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The output could not be written (e.g. a closed pipe).
    #[error("cannot write the output")]
    Write(#[source] std::io::Error),
}

#[derive(Serialize)]
struct Line<'a> {
    text: &'a str,
    vector: &'a [f32],
}

/// The figures `--bench` reports.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Texts embedded.
    pub texts: usize,
    /// Tokens fed to the model, [CLS] and [SEP] included, padding excluded.
    pub tokens: usize,
    /// Wall-clock seconds of the embed call (model load excluded).
    pub seconds: f64,
    /// `texts / seconds`.
    pub sentences_per_second: f64,
    /// CPU seconds of the process (every thread) during the embed call(s), per run.
    pub cpu_seconds: Option<f64>,
    /// Runs (`--repeat`); `seconds` is the first.
    pub runs: usize,
    /// Wall-clock seconds of the fastest run.
    pub best_seconds: f64,
    /// Wall-clock seconds of the median run.
    pub median_seconds: f64,
    /// `texts / best_seconds`.
    pub best_sentences_per_second: f64,
    /// Floating-point operations of the transformer for the input, per run (multiply-adds
    /// count two; the dense layers and attention, which are all but a fraction of a percent).
    pub gflop: f64,
    /// Worker threads used.
    pub threads: usize,
    /// The engine that ran the transformer (`Native` or `Graph`).
    pub engine: String,
    /// Seconds to load the model (graph build and optimisation included).
    pub load_seconds: f64,
    /// Peak resident memory of the process in MiB, when the OS reports it.
    pub peak_rss_mib: Option<f64>,
}

/// Run `vecsync embed`, writing its output to `out`.
pub fn run_command(cmd: &EmbedCommand, out: &mut dyn Write) -> Result<(), EmbedCommandError> {
    let texts = read_texts(&cmd.input)?;
    let load_started = Instant::now();
    let embedder = Embedder::load_engine(&cmd.model_dir, cmd.options, cmd.engine)?;
    let load_seconds = load_started.elapsed().as_secs_f64();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    let runs = if cmd.bench { cmd.repeat.max(1) } else { 1 };
    let cpu_started = process_cpu_seconds();
    let mut times = Vec::with_capacity(runs);
    let mut vectors = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        vectors = embedder.embed(&refs)?;
        times.push(started.elapsed().as_secs_f64());
    }
    let cpu_seconds = process_cpu_seconds()
        .zip(cpu_started)
        .map(|(end, start)| (end - start) / runs as f64);
    let seconds = times[0];
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let (best_seconds, median_seconds) = (sorted[0], sorted[sorted.len() / 2]);

    let written = if cmd.bench {
        let counts = refs
            .iter()
            .map(|t| embedder.count_tokens(t))
            .collect::<Result<Vec<usize>, _>>()?;
        let tokens = counts.iter().sum();
        let gflop = counts.iter().map(|&n| embedder.flops(n)).sum::<f64>() / 1e9;
        let report = BenchReport {
            texts: texts.len(),
            tokens,
            seconds,
            sentences_per_second: texts.len() as f64 / seconds.max(f64::MIN_POSITIVE),
            cpu_seconds,
            runs,
            best_seconds,
            median_seconds,
            best_sentences_per_second: texts.len() as f64 / best_seconds.max(f64::MIN_POSITIVE),
            gflop,
            threads: embedder.threads(),
            engine: format!("{:?}", embedder.engine()),
            load_seconds,
            peak_rss_mib: peak_rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0)),
        };
        write_json_line(out, &report)
    } else {
        refs.iter()
            .zip(&vectors)
            .try_for_each(|(text, vector)| write_json_line(out, &Line { text, vector }))
    };
    match written.and_then(|()| out.flush()) {
        // The reader went away (`vecsync embed ... | head`): not an error, as in other tools.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(EmbedCommandError::Write),
    }
}

pub(crate) fn write_json_line(out: &mut dyn Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

pub(crate) fn read_texts(input: &EmbedInput) -> Result<Vec<String>, EmbedCommandError> {
    match input {
        EmbedInput::Texts(texts) => Ok(texts.clone()),
        EmbedInput::File(path) => {
            let read_err = |source| EmbedCommandError::ReadInput {
                path: path.clone(),
                source,
            };
            let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(path).map_err(read_err)?,
                ))
            };
            // lines() drops "\n" and "\r\n"; every line, empty ones included, is a text.
            reader
                .lines()
                .collect::<Result<Vec<_>, _>>()
                .map_err(read_err)
        }
    }
}

/// CPU time (user and system, every thread) the process has used, from /proc/self/stat.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // Linux reports them in USER_HZ, 100 on every architecture it runs on.
    Some(ticks / 100.0)
}

/// The process's peak resident set size (VmHWM), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
