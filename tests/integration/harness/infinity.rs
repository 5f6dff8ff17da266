//! A private infinity-emb server (michaelfeil/infinity), the real OpenAI-compatible inference
//! server the remote-embedder tests run against. It serves the very `models/all-MiniLM-L6-v2`
//! directory vecsync embeds with in-process, on the CPU, at `/v1/embeddings`.
//!
//! `scripts/fetch-infinity` installs it (scripts/test runs it); `VECSYNC_INFINITY` may point at
//! another `infinity_emb` executable.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::stack::model_dir;
use super::{free_port, wait_until};

/// How long infinity may take to load torch and the model (35 s on a busy 2-core machine).
const START_DEADLINE: Duration = Duration::from_secs(240);

/// The model name the server answers to.
pub const SERVED_MODEL: &str = "all-MiniLM-L6-v2";

/// A running infinity; killed on drop.
pub struct Infinity {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    starts: usize,
}

/// The `infinity_emb` that scripts/fetch-infinity installed.
pub fn executable() -> PathBuf {
    if let Some(path) = std::env::var_os("VECSYNC_INFINITY") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set");
    cache.join("vecsync/infinity-venv/bin/infinity_emb")
}

impl Infinity {
    /// Start infinity on a free port and wait until it serves embeddings.
    pub async fn start() -> Infinity {
        let exe = executable();
        assert!(
            exe.is_file(),
            "infinity-emb is missing at {}: run scripts/fetch-infinity (scripts/test does)",
            exe.display()
        );
        let mut me = Infinity {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            starts: 0,
        };
        me.spawn_and_wait().await;
        me
    }

    /// The API base, the form `--embedder` takes.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// `http://127.0.0.1:port`, for a proxy in front of it.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kill the server (SIGKILL), keeping its port for [`Infinity::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port and wait until it serves.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait().await;
    }

    fn log_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("infinity-{}.log", self.starts))
    }

    async fn spawn_and_wait(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("create the infinity log");
        let child = Command::new(executable())
            .args(["v2", "--model-id"])
            .arg(model_dir())
            .args([
                "--served-model-name",
                SERVED_MODEL,
                "--engine",
                "torch",
                "--device",
                "cpu",
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--url-prefix",
                "/v1",
            ])
            // No model hub is reachable, and nothing may be reported home.
            .env("HF_HUB_OFFLINE", "1")
            .env("DO_NOT_TRACK", "1")
            .env("INFINITY_ANONYMOUS_USAGE_STATS", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start infinity_emb");
        self.child = Some(child);
        let models = format!("{}/models", self.url());
        let log_path = self.log_path();
        let child = self.child.as_mut().expect("just spawned");
        let http = reqwest::Client::new();
        wait_until("infinity to serve /v1/models", START_DEADLINE, || {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("infinity_emb exited with {status} before serving:\n{log}");
            }
            let request = http.get(&models).send();
            async move {
                request
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
    }
}

impl Drop for Infinity {
    fn drop(&mut self) {
        self.stop();
    }
}
