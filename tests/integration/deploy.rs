//! The deployment files, run for real.
//!
//! * Every metric the Grafana dashboard and the Prometheus alerts query is one that `/metrics` of
//!   a running vecsync exposes, with the labels they select on.
//! * The binary, run exactly as the systemd unit, the container (Dockerfile + compose) and the
//!   two Kubernetes variants configure it (their command line, environment, user, working
//!   directory, credentials files, writable volumes), starts, checkpoints into its state
//!   directory and drains on SIGTERM with exit 0 inside the grace period the file gives.
//!   Everything but the state directory is read-only (a private mount namespace, as
//!   `ProtectSystem=strict` and `readOnlyRootFilesystem` make it) and the process runs as the
//!   file's unprivileged user (`setpriv`), so a write outside the state directory, a file the
//!   user cannot read or a setting the binary ignores fails the test.
//! * Static agreements: the ConfigMap carries `mariadb-conf/custom.cnf` unchanged, every
//!   variable the files set is one vecsync reads, probes and scrape annotations point at the
//!   metrics port, the ServiceMonitor selects the metrics Services.
//!
//! The site-specific values (MariaDB, Weaviate and Memcached addresses, the metrics port) are
//! pointed at the test's servers; every path a file names is mapped into a temporary root, and a
//! path the test does not know fails it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use vecsync::position::GtidPosition;
use weaviate_test_server::{ServerConfig, TestServer};

use crate::harness::mariadb::MariaDb;
use crate::harness::memcached::Memcached;
use crate::harness::stack::{CATALOG_SQL, Stack, model_dir};
use crate::harness::{DEFAULT_DEADLINE, free_port, wait_until};

// ---------------------------------------------------------------------------------------------
// Reading the files

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read_repo(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Every YAML document in a repository file, as JSON values.
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read_repo(rel);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_doc(rel: &str) -> Value {
    let mut docs = yaml_docs(rel);
    assert_eq!(docs.len(), 1, "{rel} holds one document");
    docs.remove(0)
}

#[track_caller]
fn str_at<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

/// "30s", "1min", "2m": what systemd and compose write for durations, as the test needs them.
fn duration(text: &str) -> Duration {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("duration {text:?}"));
    match unit {
        "" | "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(60 * n),
        other => panic!("duration unit {other:?} in {text:?}"),
    }
}

/// `VAR=value` lines (systemd's EnvironmentFile, without its rarely used quoting rules).
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not VAR=value: {l:?}"));
            (k.trim().to_owned(), v.trim().trim_matches('"').to_owned())
        })
        .collect()
}

/// The `key=value` settings of one section of a systemd unit, in order.
fn unit_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "line continuations are not parsed here: {line}"
        );
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
            continue;
        }
        if current == section {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not key=value: {line}"));
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

/// Words of a systemd setting: whitespace-separated, double quotes group.
fn unit_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

/// The Dockerfile's final (runtime) stage: its instructions, continuation lines joined.
fn dockerfile_runtime_stage() -> Vec<(String, String)> {
    let text = read_repo("Dockerfile");
    let mut joined = Vec::new();
    let mut line = String::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if line.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            line.push_str(head);
            line.push(' ');
        } else {
            line.push_str(trimmed);
            joined.push(std::mem::take(&mut line));
        }
    }
    let last_from = joined
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("the Dockerfile has a FROM");
    joined[last_from..]
        .iter()
        .map(|l| {
            let (i, rest) = l.split_once(' ').unwrap_or((l, ""));
            (i.to_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

/// What the image gives a container: ENTRYPOINT, CMD, ENV, USER, WORKDIR, VOLUMEs.
struct Image {
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    user: String,
    workdir: String,
    volumes: Vec<String>,
}

fn image() -> Image {
    let json_array = |s: &str| -> Vec<String> {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("not a JSON array ({e}): {s}"))
    };
    let mut image = Image {
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        env: Vec::new(),
        user: "0".into(),
        workdir: "/".into(),
        volumes: Vec::new(),
    };
    for (instruction, rest) in dockerfile_runtime_stage() {
        match instruction.as_str() {
            "ENTRYPOINT" => image.entrypoint = json_array(&rest),
            "CMD" => image.cmd = json_array(&rest),
            "USER" => image.user = rest,
            "WORKDIR" => image.workdir = rest,
            "VOLUME" => image.volumes = json_array(&rest),
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("ENV without '=': {rest}"));
                    image.env.push((k.to_owned(), v.to_owned()));
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        image.entrypoint.first().map(String::as_str),
        Some("vecsync"),
        "the image's entrypoint is vecsync"
    );
    image
}

fn uid_gid(user: &str) -> (u32, u32) {
    let (u, g) = user.split_once(':').unwrap_or((user, user));
    let n = |s: &str| -> u32 {
        s.parse()
            .unwrap_or_else(|_| panic!("user {user:?} is not numeric uid:gid"))
    };
    (n(u), n(g))
}

// ---------------------------------------------------------------------------------------------
// Metrics: what the dashboard and the alerts query, against what /metrics exposes

/// Metrics other helpers are adding at the same time as the dashboard (source health, chunked
/// snapshots, the plan stage's skips, the byte budget). The dashboard and the alerts use their
/// final names already. Remove a name here once vecsync exposes it: this test says when.
const PENDING_METRICS: &[&str] = &[];

/// Labels Prometheus adds itself (or histograms carry), never exposed by vecsync's own series.
const TARGET_LABELS: &[&str] = &["instance", "job", "le"];

/// Every PromQL expression of the dashboard and the alert rules, with where it came from.
fn queries() -> Vec<(String, String)> {
    fn walk(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                let title = map.get("title").and_then(Value::as_str).unwrap_or(at);
                for (k, child) in map {
                    match (k.as_str(), child) {
                        ("expr" | "definition", Value::String(e)) => {
                            out.push((format!("dashboard panel {title:?}"), e.clone()))
                        }
                        _ => walk(child, title, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, at, out)),
            _ => {}
        }
    }
    let dashboard: Value =
        serde_json::from_str(&read_repo("deploy/grafana/vecsync.json")).expect("dashboard JSON");
    let mut out = Vec::new();
    walk(&dashboard, "dashboard", &mut out);
    let rules = yaml_doc("deploy/prometheus/vecsync.rules.yml");
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .expect("a named rule");
            out.push((format!("alert {name}"), str_at(rule, "/expr").to_owned()));
        }
    }
    assert!(out.len() > 20, "found the queries: {out:?}");
    out
}

/// A metric a query names, and the label names it selects on (`name{label=...}`).
#[derive(Debug)]
struct Selector {
    metric: String,
    labels: Vec<String>,
}

fn selectors(expr: &str) -> Vec<Selector> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(found) = expr[i..].find("vecsync_") {
        let start = i + found;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_')
        };
        let end = start
            + expr[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len() - start);
        i = end;
        if !boundary {
            continue;
        }
        let mut labels = Vec::new();
        if expr[end..].starts_with('{') {
            let close = end + expr[end..].find('}').expect("closing brace");
            for matcher in split_matchers(&expr[end + 1..close]) {
                let name: String = matcher
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    labels.push(name);
                }
            }
            i = close + 1;
        }
        out.push(Selector {
            metric: expr[start..end].to_owned(),
            labels,
        });
    }
    out
}

/// `a="x", b=~"y,z"` split at the commas outside quotes.
fn split_matchers(inner: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut from) = (false, false, 0);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&inner[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[from..]);
    parts
}

/// The labels of `by (...)` / `without (...)` / `on (...)` clauses.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for keyword in ["by", "on", "ignoring", "without"] {
        let mut rest = expr;
        while let Some(at) = rest.find(keyword) {
            let before_ok = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
            let after = rest[at + keyword.len()..].trim_start();
            if before_ok && after.starts_with('(') {
                let close = after.find(')').expect("closing parenthesis");
                out.extend(
                    after[1..close]
                        .split(',')
                        .map(|l| l.trim().to_owned())
                        .filter(|l| !l.is_empty()),
                );
            }
            rest = &rest[at + keyword.len()..];
        }
    }
    out
}

/// The series of a Prometheus text exposition: name -> label sets.
fn parse_exposition(body: &str) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
    let mut out: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let mut labels = BTreeMap::new();
        if line[name_end..].starts_with('{') {
            let mut chars = line[name_end + 1..].chars().peekable();
            loop {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                let key = key.trim_start_matches(',').trim().to_owned();
                if key.is_empty() || key.starts_with('}') {
                    break;
                }
                assert_eq!(chars.next(), Some('"'), "label value quoted: {line}");
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
                labels.insert(key, value);
                if chars.peek() == Some(&'}') {
                    break;
                }
            }
        }
        out.entry(name.to_owned()).or_default().push(labels);
    }
    out
}

async fn scrape(port: u16) -> String {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("scrape /metrics");
    assert!(response.status().is_success());
    response.text().await.expect("metrics body")
}

/// Compare what the queries need with what a scrape shows; returns the problems.
fn missing_metrics(
    queries: &[(String, String)],
    exposed: &BTreeMap<String, Vec<BTreeMap<String, String>>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut pending_used = BTreeSet::new();
    for (place, expr) in queries {
        let found = selectors(expr);
        for s in &found {
            let Some(series) = exposed.get(&s.metric) else {
                if PENDING_METRICS.contains(&s.metric.as_str()) {
                    pending_used.insert(s.metric.clone());
                } else {
                    problems.push(format!(
                        "{place} queries {}, which vecsync does not expose",
                        s.metric
                    ));
                }
                continue;
            };
            for label in s
                .labels
                .iter()
                .filter(|l| !TARGET_LABELS.contains(&l.as_str()))
            {
                if !series.iter().any(|set| set.contains_key(label)) {
                    problems.push(format!(
                        "{place} selects {}{{{label}=...}}, but no exposed series has that label",
                        s.metric
                    ));
                }
            }
        }
        for label in grouping_labels(expr)
            .iter()
            .filter(|l| !TARGET_LABELS.contains(&l.as_str()))
        {
            let has = found.iter().any(|s| {
                exposed
                    .get(&s.metric)
                    .is_some_and(|series| series.iter().any(|set| set.contains_key(label)))
            });
            let only_pending = found
                .iter()
                .all(|s| PENDING_METRICS.contains(&s.metric.as_str()));
            if !has && !only_pending {
                problems.push(format!(
                    "{place} groups by {label:?}, which none of its metrics has: {expr}"
                ));
            }
        }
    }
    for name in PENDING_METRICS {
        if exposed.contains_key(*name) {
            problems.push(format!(
                "{name} is exposed now: remove it from PENDING_METRICS in tests/integration/deploy.rs"
            ));
        }
    }
    if !pending_used.is_empty() {
        println!(
            "queried but not yet exposed (PENDING_METRICS, added by other branches): {pending_used:?}"
        );
    }
    problems
}

#[test]
fn query_parsing_finds_metrics_labels_and_groupings() {
    let s = selectors(
        r#"histogram_quantile(0.5, sum by (le, op) (rate(vecsync_x_bucket{instance=~"$i", op="a,b"}[5m]))) and on (job) vecsync_y"#,
    );
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0].metric, "vecsync_x_bucket");
    assert_eq!(s[0].labels, ["instance", "op"]);
    assert_eq!(s[1].metric, "vecsync_y");
    assert!(selectors("not_vecsync_z").is_empty());
    let mut groups = grouping_labels("sum by (le, op) (x) and on (job) y");
    groups.sort();
    assert_eq!(groups, ["job", "le", "op"]);
    let exposed = parse_exposition(
        "# HELP a b\nvecsync_checkpoint_info{gtid=\"0-1-2,1-2-3\"} 1\nvecsync_a 0\nvecsync_b{op=\"c\",kind=\"x\\\"y\"} 1\n",
    );
    assert_eq!(exposed["vecsync_checkpoint_info"][0]["gtid"], "0-1-2,1-2-3");
    assert!(exposed["vecsync_a"][0].is_empty());
    assert_eq!(exposed["vecsync_b"][0]["kind"], "x\"y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alerts_query_only_metrics_vecsync_exposes() {
    let queries = queries();
    let stack = Stack::start().await;
    let run = stack.run_in_process(&[]);
    stack
        .wait_object("the snapshot of the seed rows", "TS-001", |o| o.is_some())
        .await;
    // A streamed transaction: the histograms (batch size, commit to visible) get a sample.
    stack
        .db
        .exec("INSERT INTO catalog.products (sku, name, description, price) VALUES ('DASH-1', 'Dashboard', 'a row for every panel', 1.00)")
        .await;
    let want: GtidPosition = stack.db.gtid_binlog_pos().await.parse().expect("gtid");
    wait_until(
        "the checkpoint to cover the insert",
        DEFAULT_DEADLINE,
        || {
            let ok = vecsync::checkpoint::read(&stack.checkpoint_path())
                .ok()
                .flatten()
                .is_some_and(|c| c.gtid.covers(&want));
            async move { ok.then_some(()) }
        },
    )
    .await;
    let exposed = parse_exposition(&scrape(stack.metrics_port).await);
    run.stop().await;
    let problems = missing_metrics(&queries, &exposed);
    assert!(
        problems.is_empty(),
        "the dashboard or the alerts do not match /metrics:\n  {}\nexposed: {:?}",
        problems.join("\n  "),
        exposed.keys().collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// Running the binary as a deployment file says

/// The servers a deployed vecsync talks to, private to one test.
struct Site {
    db: MariaDb,
    memcached: Memcached,
    weaviate: TestServer,
    /// The least-privilege MariaDB user's password and the Weaviate API key.
    password: String,
    api_key: String,
}

impl Site {
    /// MariaDB with the seed's catalog and a least-privilege `vecsync`@`127.0.0.1` (README,
    /// "Least privilege") with `password`; a Weaviate test server that requires an API key.
    async fn start(password: &str, tls: bool) -> Site {
        let db = if tls {
            let fixture = |f: &str| {
                repo_path("tests/fixtures/tls")
                    .join(f)
                    .display()
                    .to_string()
            };
            MariaDb::start_with(&[
                &format!("ssl_cert={}", fixture("server-cert.pem")),
                &format!("ssl_key={}", fixture("server-key.pem")),
            ])
            .await
        } else {
            MariaDb::start().await
        };
        db.exec(CATALOG_SQL).await;
        let require = if tls { " REQUIRE SSL" } else { "" };
        db.exec(&format!(
            "CREATE USER 'vecsync'@'127.0.0.1' IDENTIFIED BY '{password}'{require};
             GRANT REPLICATION SLAVE ON *.* TO 'vecsync'@'127.0.0.1';
             GRANT SELECT ON catalog.products TO 'vecsync'@'127.0.0.1';"
        ))
        .await;
        let api_key = format!("key-{}", uuid::Uuid::new_v4().simple());
        let weaviate = TestServer::start_with(
            ServerConfig {
                api_keys: vec![api_key.clone()],
                ..ServerConfig::default()
            },
            0,
        )
        .await
        .expect("start the Weaviate test server");
        Site {
            db,
            memcached: Memcached::start(),
            weaviate,
            password: password.to_owned(),
            api_key,
        }
    }
}

/// Where [`Root`] links the model, below its directory.
const LINKED_MODEL: &str = "opt_vecsync_models_all-MiniLM-L6-v2";

/// A temporary stand-in for the machine's filesystem: the paths a deployment file names map to
/// directories under it.
struct Root {
    dir: tempfile::TempDir,
    /// deployment path prefix -> where it is here.
    map: Vec<(String, PathBuf)>,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::Builder::new()
            .prefix("vecsync-deploy-")
            .tempdir()
            .expect("tempdir");
        // The unprivileged user must reach what is inside.
        chmod(dir.path(), 0o755);
        // ... the model too, and the checkout may sit below a directory only its owner can
        // enter (a CI workspace made by `mktemp -d` is 0700): the model is linked in here.
        let model = dir.path().join(LINKED_MODEL);
        link_tree(&model_dir(), &model);
        Root {
            dir,
            map: vec![("/opt/vecsync/models/all-MiniLM-L6-v2".into(), model)],
        }
    }

    /// A fresh directory standing for `deploy_path`, owned by `owner` with `mode`.
    fn dir(&mut self, deploy_path: &str, owner: (u32, u32), mode: u32) -> PathBuf {
        let here = self
            .dir
            .path()
            .join(deploy_path.trim_start_matches('/').replace('/', "_"));
        std::fs::create_dir_all(&here).expect("create a directory");
        chown(&here, owner);
        chmod(&here, mode);
        self.map.push((deploy_path.to_owned(), here.clone()));
        here
    }

    /// `value` with a known deployment path prefix replaced; any other absolute path fails.
    #[track_caller]
    fn map(&self, value: &str) -> String {
        if !value.starts_with('/') {
            return value.to_owned();
        }
        let best = self
            .map
            .iter()
            .filter(|(prefix, _)| {
                value == prefix || value.starts_with(&format!("{}/", prefix.trim_end_matches('/')))
            })
            .max_by_key(|(prefix, _)| prefix.len());
        match best {
            Some((prefix, here)) => format!("{}{}", here.display(), &value[prefix.len()..]),
            None => panic!("the deployment file names {value}, a path this test does not map"),
        }
    }
}

/// `from`'s files under `to`, hard-linked (copied across filesystems), readable by everyone.
fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory");
    chmod(to, 0o755);
    for entry in std::fs::read_dir(from).expect("read the model directory") {
        let entry = entry.expect("a directory entry");
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().expect("file type").is_dir() {
            link_tree(&source, &target);
        } else if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target).expect("copy a model file");
            chmod(&target, 0o644);
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(path: &Path, (uid, gid): (u32, u32)) {
    if is_root() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
}

fn is_root() -> bool {
    // /proc/self belongs to the process's effective uid.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        == 0
}

fn write_file(path: &Path, text: &str, owner: (u32, u32), mode: u32) {
    std::fs::write(path, text).expect("write a file");
    chown(path, owner);
    chmod(path, mode);
}

/// PATH as systemd gives services and Debian images give containers.
const PLATFORM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How a deployment file runs vecsync, mapped onto this machine.
struct Deployed {
    form: &'static str,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    /// The only writable directories.
    writable: Vec<PathBuf>,
    stop_within: Duration,
    /// Where the checkpoint is written.
    checkpoint: PathBuf,
    metrics_port: u16,
    /// HTTP paths that must answer 200 once vecsync is ready (the probes).
    probes: Vec<String>,
}

impl Deployed {
    /// Point the site-specific settings at the test's servers (each must be set by the file) and
    /// map every path.
    fn point_at(&mut self, site: &Site, root: &Root) {
        for key in [
            "MARIADB_URL",
            "WEAVIATE_URL",
            "MEMCACHED_SERVER",
            "VECSYNC_METRICS_ADDR",
        ] {
            assert!(
                self.env.contains_key(key),
                "the {} does not set {key}; it would run with a default meant for a laptop",
                self.form
            );
        }
        let url = &self.env["MARIADB_URL"];
        self.env
            .insert("MARIADB_URL".into(), local_mariadb(url, site.db.port()));
        self.env.insert("WEAVIATE_URL".into(), site.weaviate.url());
        self.env
            .insert("MEMCACHED_SERVER".into(), site.memcached.addr());
        let addr = &self.env["VECSYNC_METRICS_ADDR"];
        let (ip, _) = addr
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("VECSYNC_METRICS_ADDR {addr}"));
        self.metrics_port = free_port();
        self.env.insert(
            "VECSYNC_METRICS_ADDR".into(),
            format!("{ip}:{}", self.metrics_port),
        );
        for value in self.env.values_mut() {
            *value = root.map(value);
        }
        for arg in &mut self.args {
            *arg = root.map(arg);
        }
        let checkpoint = self
            .env
            .get("VECSYNC_CHECKPOINT")
            .unwrap_or_else(|| panic!("the {} does not place the checkpoint", self.form));
        self.checkpoint = PathBuf::from(checkpoint);
        assert!(
            self.writable.iter().any(|w| self.checkpoint.starts_with(w)),
            "the {}'s checkpoint {} is not on a writable volume",
            self.form,
            self.checkpoint.display()
        );
        self.env.insert("PATH".into(), PLATFORM_PATH.into());
    }

    /// Start vecsync in a private mount namespace where everything but `writable` is
    /// read-only, as the file's user.
    fn spawn(&self) -> Running {
        // Bind each writable directory onto itself (so it is a mount of its own), make every
        // other mount read-only (the API filesystems stay as systemd and container runtimes
        // leave them), re-enter the working directory through the new mounts, then exec.
        const SCRIPT: &str = r#"set -eu
keep=""
while [ "$1" != "--" ]; do mount --bind "$1" "$1"; keep="$keep $1"; shift; done
shift
for mp in $(awk '{print $5}' /proc/self/mountinfo); do
    case "$mp" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
    skip=""
    for k in $keep; do [ "$mp" = "$k" ] && skip=1; done
    [ -n "$skip" ] && continue
    mount -o remount,bind,ro "$mp" || { echo "cannot make $mp read-only" >&2; exit 1; }
done
cd "$(pwd)"
exec "$@"
"#;
        let mut cmd;
        if is_root() {
            cmd = Command::new("unshare");
            cmd.args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                SCRIPT,
                "sh",
            ]);
            cmd.args(&self.writable).arg("--");
            cmd.arg("setpriv")
                .arg(format!("--reuid={}", self.uid))
                .arg(format!("--regid={}", self.gid));
            if self.groups.is_empty() {
                cmd.arg("--clear-groups");
            } else {
                let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
                cmd.arg(format!("--groups={}", groups.join(",")));
            }
            cmd.args(["--no-new-privs", "--inh-caps=-all", "--"]);
            cmd.arg(env!("CARGO_BIN_EXE_vecsync"));
        } else {
            println!(
                "not root: the {} runs as this user on a writable filesystem (CI runs as root and checks both)",
                self.form
            );
            cmd = Command::new(env!("CARGO_BIN_EXE_vecsync"));
        }
        cmd.args(&self.args)
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        println!(
            "{}: vecsync {} as {}:{} in {} with {:?}",
            self.form,
            self.args.join(" "),
            self.uid,
            self.gid,
            self.cwd.display(),
            self.env
        );
        Running(Some(cmd.spawn().expect("start vecsync as deployed")))
    }
}

/// `mysql://user@host:port?query` with the host and port of the test's MariaDB. The test server
/// runs on this machine, where mysql_async would switch to MariaDB's Unix socket (which the
/// deployed user cannot reach); a deployed vecsync reaches its server over TCP, so the test does
/// too.
fn local_mariadb(url: &str, port: u16) -> String {
    let rest = url
        .strip_prefix("mysql://")
        .unwrap_or_else(|| panic!("MARIADB_URL {url}"));
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (user, _) = authority
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("MARIADB_URL {url} names no user"));
    assert!(!user.contains(':'), "MARIADB_URL {url} carries a password");
    let sep = if tail.contains('?') { '&' } else { '?' };
    format!("mysql://{user}@127.0.0.1:{port}{tail}{sep}prefer_socket=false")
}

/// The deployed process; killed if the test fails before it exits.
struct Running(Option<Child>);

impl Running {
    fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.0
            .as_mut()
            .expect("running")
            .try_wait()
            .expect("try_wait")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take()
            && child.try_wait().ok().flatten().is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A socket standing in for systemd's notification socket.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn new(root: &Root) -> NotifySocket {
        let path = root.dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket.set_nonblocking(true).expect("nonblocking");
        // Like systemd's: any user may send to it.
        chmod(&path, 0o777);
        NotifySocket { socket, path }
    }

    async fn wait_for(&self, state: &str) {
        wait_until(
            &format!("vecsync to send {state}"),
            DEFAULT_DEADLINE,
            || {
                let mut buf = [0u8; 256];
                let got = match self.socket.recv(&mut buf) {
                    Ok(n) => String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .any(|l| l == state),
                    Err(_) => false,
                };
                async move { got.then_some(()) }
            },
        )
        .await;
    }
}

async fn http_status(port: u16, path: &str) -> Option<u16> {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Start `deployed`, see it become ready, index a change and checkpoint it into the state
/// directory, then SIGTERM it and see it drain: exit 0 in time, the checkpoint covering the
/// change, every file it wrote owned by the deployed user.
async fn start_index_and_drain(deployed: &Deployed, site: &Site, notify: Option<&NotifySocket>) {
    let mut vecsync = deployed.spawn();
    let port = deployed.metrics_port;
    wait_until("/readyz to answer 200", Duration::from_secs(60), || {
        let exited = vecsync.try_wait();
        async move {
            if let Some(status) = exited {
                panic!(
                    "the {}'s vecsync exited with {status} before it was ready",
                    deployed.form
                );
            }
            (http_status(port, "/readyz").await == Some(200)).then_some(())
        }
    })
    .await;
    if let Some(notify) = notify {
        notify.wait_for("READY=1").await;
    }
    for probe in &deployed.probes {
        assert_eq!(
            http_status(port, probe).await,
            Some(200),
            "the {}'s probe {probe} fails on a ready vecsync",
            deployed.form
        );
    }
    let seed = vecsync::sink::product_id("TS-001");
    wait_until("the snapshot of the seed rows", DEFAULT_DEADLINE, || {
        let ok = site.weaviate.object("Product", seed).is_some();
        async move { ok.then_some(()) }
    })
    .await;
    site.db
        .exec("INSERT INTO catalog.products (sku, name, description, price) VALUES ('DEPLOY-1', 'Deployed', 'indexed by a deployed vecsync', 5.00)")
        .await;
    let want: GtidPosition = site.db.gtid_binlog_pos().await.parse().expect("gtid");
    let covered = || {
        vecsync::checkpoint::read(&deployed.checkpoint)
            .ok()
            .flatten()
            .is_some_and(|c| c.gtid.covers(&want))
    };
    wait_until(
        "the checkpoint in the state directory to cover the insert",
        DEFAULT_DEADLINE,
        || {
            let ok = covered();
            async move { ok.then_some(()) }
        },
    )
    .await;
    assert!(
        site.weaviate
            .object("Product", vecsync::sink::product_id("DEPLOY-1"))
            .is_some(),
        "the insert is in Weaviate"
    );

    let status = Command::new("kill")
        .args(["-TERM", &vecsync.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM");
    if let Some(notify) = notify {
        notify.wait_for("STOPPING=1").await;
    }
    let exit = wait_until(
        &format!(
            "vecsync to exit within the {}'s grace period",
            deployed.form
        ),
        deployed.stop_within,
        || {
            let exit = vecsync.try_wait();
            async move { exit }
        },
    )
    .await;
    assert!(
        exit.success(),
        "the {}'s vecsync exited with {exit}",
        deployed.form
    );
    assert!(covered(), "the final checkpoint covers the insert");
    if is_root() {
        for dir in &deployed.writable {
            for entry in std::fs::read_dir(dir).expect("read the state directory") {
                let entry = entry.expect("entry");
                let meta = entry.metadata().expect("metadata");
                assert_eq!(
                    meta.uid(),
                    deployed.uid,
                    "{} was written by uid {}, not the deployed user",
                    entry.path().display(),
                    meta.uid()
                );
            }
        }
    }
}

// --- systemd ---------------------------------------------------------------------------------

/// DynamicUser= picks a uid from 61184-65519; any unused one stands for it.
const DYNAMIC_UID: u32 = 61184;

fn systemd_unit(root: &mut Root, site_secrets: &BTreeMap<&str, String>) -> Deployed {
    let unit = read_repo("deploy/systemd/vecsync.service");
    let service = unit_section(&unit, "Service");
    let get = |key: &str| -> Vec<&str> {
        service
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |key: &str| -> &str {
        let values = get(key);
        assert_eq!(values.len(), 1, "vecsync.service sets {key} once");
        values[0]
    };
    assert_eq!(
        one("ProtectSystem"),
        "strict",
        "the test's read-only root is ProtectSystem=strict"
    );
    assert_eq!(one("DynamicUser"), "yes");
    let owner = (DYNAMIC_UID, DYNAMIC_UID);

    // %S and the state directory, as systemd creates it.
    let state_root = root.dir("/var/lib", (0, 0), 0o755);
    let state_mode = u32::from_str_radix(one("StateDirectoryMode"), 8).expect("octal mode");
    let state = state_root.join(one("StateDirectory"));
    std::fs::create_dir(&state).expect("create the state directory");
    chown(&state, owner);
    chmod(&state, state_mode);
    // %d and the credentials systemd copies there (readable by the service only).
    let creds = root.dir("/run/credentials/vecsync.service", owner, 0o500);
    for credential in get("LoadCredential") {
        let (name, _source) = credential
            .split_once(':')
            .unwrap_or_else(|| panic!("LoadCredential={credential}"));
        let content = site_secrets
            .get(name)
            .unwrap_or_else(|| panic!("the test has no value for credential {name}"));
        write_file(&creds.join(name), &format!("{content}\n"), owner, 0o400);
    }
    let specifiers = |value: &str| -> String {
        let out = value
            .replace("%S", "/var/lib")
            .replace("%d", "/run/credentials/vecsync.service");
        assert!(
            !out.contains('%'),
            "a specifier this test does not know: {value}"
        );
        out
    };

    // Environment= first; EnvironmentFile= overrides it (systemd.exec(5)).
    let mut env = BTreeMap::new();
    for line in get("Environment") {
        for word in unit_words(line) {
            let (k, v) = word
                .split_once('=')
                .unwrap_or_else(|| panic!("Environment={line}"));
            env.insert(k.to_owned(), specifiers(v));
        }
    }
    assert_eq!(one("EnvironmentFile"), "/etc/vecsync/vecsync.env");
    for (k, v) in env_file(&read_repo("deploy/systemd/vecsync.env")) {
        env.insert(k, v);
    }
    env.insert("STATE_DIRECTORY".into(), "/var/lib/vecsync".into());
    env.insert(
        "CREDENTIALS_DIRECTORY".into(),
        "/run/credentials/vecsync.service".into(),
    );

    let exec = unit_words(one("ExecStart"));
    assert_eq!(
        exec[0], "/usr/local/bin/vecsync",
        "ExecStart runs the installed binary"
    );
    // The model is installed where the env file says (README: scripts/fetch-model DIR).
    let model = env
        .get("VECSYNC_MODEL")
        .expect("the env file names the model")
        .clone();
    let linked = root.dir.path().join(LINKED_MODEL);
    root.map.push((model, linked));
    Deployed {
        form: "systemd unit",
        args: exec[1..].to_vec(),
        cwd: PathBuf::from(root.map(&specifiers(one("WorkingDirectory")))),
        env,
        uid: owner.0,
        gid: owner.1,
        groups: Vec::new(),
        writable: vec![state],
        stop_within: duration(one("TimeoutStopSec")),
        checkpoint: PathBuf::new(),
        metrics_port: 0,
        probes: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_as_the_systemd_unit_says_and_drains_on_sigterm() {
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let site = Site::start(&password, false).await;
    let mut root = Root::new();
    let secrets = BTreeMap::from([
        ("mariadb-password", site.password.clone()),
        ("weaviate-api-key", site.api_key.clone()),
    ]);
    let mut deployed = systemd_unit(&mut root, &secrets);
    let notify = NotifySocket::new(&root);
    deployed.point_at(&site, &root);
    assert_eq!(
        unit_section(&read_repo("deploy/systemd/vecsync.service"), "Service")
            .iter()
            .find(|(k, _)| k == "Type")
            .map(|(_, v)| v.as_str()),
        Some("notify")
    );
    deployed
        .env
        .insert("NOTIFY_SOCKET".into(), notify.path.display().to_string());
    start_index_and_drain(&deployed, &site, Some(&notify)).await;
}

// --- container: Dockerfile + docker-compose.yml ------------------------------------------------

fn compose_service() -> Value {
    let compose = yaml_doc("docker-compose.yml");
    compose["services"]["vecsync"].clone()
}

/// Compose's `${VAR:-default}` with VAR unset, as on a fresh checkout.
fn compose_default(value: &str) -> String {
    match value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .and_then(|v| v.split_once(":-"))
    {
        Some((_, default)) => default.to_owned(),
        None => {
            assert!(
                !value.contains('$'),
                "interpolation this test does not know: {value}"
            );
            value.to_owned()
        }
    }
}

fn compose_container(root: &mut Root) -> Deployed {
    let image = image();
    let service = compose_service();
    assert_eq!(
        service["read_only"],
        Value::Bool(true),
        "compose runs vecsync with a read-only root"
    );
    let user = service["user"].as_str().unwrap_or(&image.user).to_owned();
    let (uid, gid) = uid_gid(&user);
    assert_ne!(uid, 0, "the container does not run as root");

    let mut writable = Vec::new();
    for volume in service["volumes"].as_array().expect("volumes") {
        let spec = volume.as_str().expect("short volume syntax");
        let (_, target) = spec.split_once(':').expect("volume:target");
        let target = target.trim_end_matches(":rw");
        assert!(
            image.volumes.iter().any(|v| v == target),
            "compose mounts {target}, which the image does not declare as a VOLUME"
        );
        // A new named volume starts as the image's directory: 10001, 0700 (Dockerfile).
        writable.push(root.dir(target, (uid, gid), 0o700));
    }
    let mut env: BTreeMap<String, String> = image.env.iter().cloned().collect();
    for (k, v) in service["environment"]
        .as_object()
        .expect("environment as a map")
    {
        let v = match v {
            Value::String(s) => compose_default(s),
            other => other.to_string(),
        };
        env.insert(k.clone(), v);
    }
    let command: Vec<String> = match service.get("command") {
        Some(Value::Array(c)) => c
            .iter()
            .map(|a| a.as_str().expect("arg").to_owned())
            .collect(),
        None => image.cmd.clone(),
        Some(other) => panic!("compose command as a list, got {other}"),
    };
    let mut args = image.entrypoint[1..].to_vec();
    args.extend(command);
    Deployed {
        form: "compose service",
        args,
        cwd: PathBuf::from(root.map(&image.workdir)),
        env,
        uid,
        gid,
        groups: Vec::new(),
        writable,
        stop_within: duration(str_at(&service, "/stop_grace_period")),
        checkpoint: PathBuf::new(),
        metrics_port: 0,
        probes: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_as_the_compose_container_says_and_drains_on_sigterm() {
    let mut root = Root::new();
    let mut deployed = compose_container(&mut root);
    let password = deployed
        .env
        .get("MARIADB_PASSWORD")
        .expect("compose passes the demo password")
        .clone();
    let site = Site::start(&password, false).await;
    // The demo Weaviate is anonymous; this one wants a key, passed as an operator would.
    deployed
        .env
        .insert("WEAVIATE_API_KEY".into(), site.api_key.clone());
    deployed.point_at(&site, &root);
    start_index_and_drain(&deployed, &site, None).await;
}

// --- Kubernetes ------------------------------------------------------------------------------

/// The `vecsync` container of a workload manifest, run as its pod would run it. `files` gives
/// the content of the Secrets and ConfigMaps it mounts, by their names.
fn kubernetes_container(
    manifest: &str,
    root: &mut Root,
    files: &BTreeMap<&str, BTreeMap<&str, String>>,
) -> Deployed {
    let docs = yaml_docs(manifest);
    let workload = docs
        .iter()
        .find(|d| matches!(d["kind"].as_str(), Some("StatefulSet" | "Deployment")))
        .unwrap_or_else(|| panic!("{manifest} has a StatefulSet or Deployment"));
    let pod = &workload["spec"]["template"]["spec"];
    let container = pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "vecsync")
        .unwrap_or_else(|| panic!("{manifest} has a container named vecsync"))
        .clone();
    let image = image();
    assert!(
        container.get("command").is_none(),
        "the image's entrypoint runs"
    );

    let security = |key: &str| {
        container["securityContext"]
            .get(key)
            .or_else(|| pod["securityContext"].get(key))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        security("runAsNonRoot"),
        Value::Bool(true),
        "{manifest}: runAsNonRoot"
    );
    assert_eq!(
        security("readOnlyRootFilesystem"),
        Value::Bool(true),
        "{manifest}: read-only root"
    );
    assert_eq!(
        security("allowPrivilegeEscalation"),
        Value::Bool(false),
        "{manifest}"
    );
    let uid = security("runAsUser").as_u64().expect("runAsUser") as u32;
    let gid = security("runAsGroup").as_u64().expect("runAsGroup") as u32;
    assert_eq!(
        (uid, gid),
        uid_gid(&image.user),
        "{manifest} runs the image's user"
    );
    let fs_group = pod["securityContext"]["fsGroup"].as_u64().map(|g| g as u32);

    let volumes: Vec<Value> = pod["volumes"].as_array().cloned().unwrap_or_default();
    let claims: Vec<String> = workload["spec"]["volumeClaimTemplates"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|c| str_at(c, "/metadata/name").to_owned())
                .collect()
        })
        .unwrap_or_default();
    let group = fs_group.unwrap_or(gid);
    let mut writable = Vec::new();
    for mount in container["volumeMounts"].as_array().expect("volumeMounts") {
        let name = str_at(mount, "/name");
        let path = str_at(mount, "/mountPath");
        let read_only = mount["readOnly"].as_bool().unwrap_or(false);
        let volume = volumes.iter().find(|v| v["name"] == name);
        let source = volume.and_then(|v| {
            v["secret"]["secretName"]
                .as_str()
                .or(v["configMap"]["name"].as_str())
        });
        match (volume, source) {
            (Some(v), Some(source)) => {
                assert!(read_only, "{manifest} mounts {name} read-only");
                let mode = file_mode(&v["secret"]["defaultMode"])
                    .or(file_mode(&v["configMap"]["defaultMode"]))
                    .unwrap_or(0o644);
                let dir = root.dir(path, (0, 0), 0o755);
                let content = files
                    .get(source)
                    .unwrap_or_else(|| panic!("the test has no content for {source}"));
                for (file, text) in content {
                    // kubelet: owned by root, group fsGroup, the volume's mode.
                    write_file(&dir.join(file), text, (0, group), mode);
                }
            }
            _ => {
                let persistent = claims.iter().any(|c| c == name)
                    || volume.is_some_and(|v| {
                        v.get("persistentVolumeClaim").is_some() || v.get("emptyDir").is_some()
                    });
                assert!(
                    persistent,
                    "{manifest}: volume {name} is a claim or an emptyDir"
                );
                assert!(!read_only);
                // A new volume with fsGroup: group-owned and group-writable.
                writable.push(root.dir(path, (0, group), 0o2775));
            }
        }
    }

    let mut env: BTreeMap<String, String> = image.env.iter().cloned().collect();
    for var in container["env"].as_array().expect("env") {
        let value = var["value"].as_str().unwrap_or_else(|| {
            panic!("{manifest}: {var} has no plain value (secrets go in files)")
        });
        env.insert(str_at(var, "/name").to_owned(), value.to_owned());
    }
    let mut args = image.entrypoint[1..].to_vec();
    match container.get("args") {
        Some(Value::Array(a)) => args.extend(a.iter().map(|x| x.as_str().expect("arg").to_owned())),
        None => args.extend(image.cmd.clone()),
        Some(other) => panic!("args as a list, got {other}"),
    }

    // The probes and the scrape annotation name the port vecsync listens on.
    let listen_port: u16 = env["VECSYNC_METRICS_ADDR"]
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("VECSYNC_METRICS_ADDR has a port");
    let ports = container["ports"].as_array().expect("ports");
    let port_named = |name: &str| -> u64 {
        ports
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("{manifest}: no container port named {name}"))
    };
    let mut probes = Vec::new();
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(http) = container[probe].get("httpGet") {
            let port = match &http["port"] {
                Value::String(name) => port_named(name),
                other => other.as_u64().expect("probe port"),
            };
            assert_eq!(port, u64::from(listen_port), "{manifest}: {probe} port");
            probes.push(str_at(http, "/path").to_owned());
        }
    }
    assert!(
        probes.iter().any(|p| p == "/healthz"),
        "{manifest}: /healthz is the liveness probe"
    );
    let annotations = &workload["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(listen_port.to_string().as_str()),
        "{manifest}: the scrape annotation names the metrics port"
    );
    assert_eq!(annotations["prometheus.io/scrape"], "true");

    Deployed {
        form: "Kubernetes container",
        args,
        cwd: PathBuf::from(root.map(&image.workdir)),
        env,
        uid,
        gid,
        groups: fs_group.into_iter().collect(),
        writable,
        stop_within: Duration::from_secs(
            pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30),
        ),
        checkpoint: PathBuf::new(),
        metrics_port: 0,
        probes,
    }
}

/// A volume's `defaultMode` as Kubernetes reads it: its YAML parser is YAML 1.1, where `0440`
/// is octal (serde_norway, YAML 1.2, keeps it as the string "0440").
fn file_mode(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().map(|n| n as u32),
        Value::String(s) if s.starts_with('0') => {
            Some(u32::from_str_radix(s, 8).unwrap_or_else(|_| panic!("mode {s:?}")))
        }
        Value::Null => None,
        other => panic!("a file mode, got {other}"),
    }
}

fn credentials(site: &Site) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("mariadb-password", format!("{}\n", site.password)),
        ("weaviate-api-key", format!("{}\n", site.api_key)),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_as_the_kubernetes_sidecar_says_and_drains_on_sigterm() {
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let site = Site::start(&password, false).await;
    let mut root = Root::new();
    let files = BTreeMap::from([("vecsync-credentials", credentials(&site))]);
    let mut deployed = kubernetes_container(
        "deploy/kubernetes/sidecar/statefulset.yaml",
        &mut root,
        &files,
    );
    assert!(
        !deployed.probes.iter().any(|p| p == "/readyz"),
        "no readiness probe in the sidecar: it would take MariaDB out of its Service"
    );
    deployed.point_at(&site, &root);
    start_index_and_drain(&deployed, &site, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_as_the_kubernetes_deployment_says_over_tls_and_drains_on_sigterm() {
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let site = Site::start(&password, true).await;
    let mut root = Root::new();
    let ca = std::fs::read_to_string(repo_path("tests/fixtures/tls/ca-cert.pem")).expect("CA");
    let files = BTreeMap::from([
        ("vecsync-credentials", credentials(&site)),
        ("mariadb-ca", BTreeMap::from([("ca.pem", ca)])),
    ]);
    let mut deployed = kubernetes_container(
        "deploy/kubernetes/standalone/deployment.yaml",
        &mut root,
        &files,
    );
    assert!(
        deployed.probes.iter().any(|p| p == "/readyz"),
        "/readyz is the readiness probe"
    );
    assert!(
        deployed.env["MARIADB_URL"].contains("require_ssl=true")
            && deployed.env.contains_key("MARIADB_SSL_CA"),
        "the standalone variant requires TLS and verifies it"
    );
    deployed.point_at(&site, &root);
    start_index_and_drain(&deployed, &site, None).await;
}

// ---------------------------------------------------------------------------------------------
// Static agreements between the files

/// Environment variables `vecsync run` reads, from its own help, plus the log level that
/// tracing reads.
fn known_variables() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_vecsync"))
        .args(["run", "--help"])
        .output()
        .expect("run vecsync run --help");
    let help = String::from_utf8_lossy(&out.stdout);
    let mut vars: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    vars.insert("LOG_LEVEL".into());
    assert!(
        vars.contains("MARIADB_URL") && vars.contains("WEAVIATE_API_KEY_FILE"),
        "{vars:?}"
    );
    vars
}

#[test]
fn every_variable_the_deployment_files_set_is_one_vecsync_reads() {
    let known = known_variables();
    let mut set: Vec<(String, String)> = Vec::new();
    let unit = read_repo("deploy/systemd/vecsync.service");
    for (k, v) in unit_section(&unit, "Service") {
        if k == "Environment" {
            for word in unit_words(&v) {
                let name = word.split_once('=').expect("VAR=value").0.to_owned();
                set.push(("vecsync.service".into(), name));
            }
        }
    }
    for (k, _) in env_file(&read_repo("deploy/systemd/vecsync.env")) {
        set.push(("vecsync.env".into(), k));
    }
    for (k, _) in image().env {
        set.push(("Dockerfile".into(), k));
    }
    for k in compose_service()["environment"]
        .as_object()
        .expect("environment")
        .keys()
    {
        set.push(("docker-compose.yml".into(), k.clone()));
    }
    for manifest in [
        "deploy/kubernetes/sidecar/statefulset.yaml",
        "deploy/kubernetes/standalone/deployment.yaml",
    ] {
        for doc in yaml_docs(manifest) {
            for c in doc["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["name"] == "vecsync")
            {
                for var in c["env"].as_array().into_iter().flatten() {
                    set.push((manifest.into(), str_at(var, "/name").to_owned()));
                }
            }
        }
    }
    let unknown: Vec<_> = set.iter().filter(|(_, k)| !known.contains(k)).collect();
    assert!(
        unknown.is_empty(),
        "variables vecsync does not read (a typo is silently ignored): {unknown:?}"
    );
    let secrets_in_env: Vec<_> = set
        .iter()
        .filter(|(file, k)| {
            (k == "MARIADB_PASSWORD" || k == "WEAVIATE_API_KEY") && file != "docker-compose.yml"
        })
        .collect();
    assert!(
        secrets_in_env.is_empty(),
        "secrets go through files, never the environment: {secrets_in_env:?}"
    );
}

#[test]
fn the_kubernetes_config_map_is_mariadb_conf_custom_cnf() {
    let map = yaml_doc("deploy/kubernetes/sidecar/mariadb-config.yaml");
    assert_eq!(
        str_at(&map, "/data/custom.cnf"),
        read_repo("mariadb-conf/custom.cnf"),
        "deploy/kubernetes/sidecar/mariadb-config.yaml must carry mariadb-conf/custom.cnf unchanged"
    );
}

#[test]
fn the_metrics_services_and_the_service_monitor_agree() {
    let monitor = yaml_doc("deploy/kubernetes/monitoring/servicemonitor.yaml");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
        .clone();
    let endpoint_port = str_at(&monitor, "/spec/endpoints/0/port").to_owned();
    for (services, workload) in [
        (
            "deploy/kubernetes/sidecar/services.yaml",
            "deploy/kubernetes/sidecar/statefulset.yaml",
        ),
        (
            "deploy/kubernetes/standalone/service.yaml",
            "deploy/kubernetes/standalone/deployment.yaml",
        ),
    ] {
        let docs = yaml_docs(services);
        let service = docs
            .iter()
            .find(|s| s["metadata"]["name"] == "vecsync-metrics")
            .unwrap_or_else(|| panic!("{services} has vecsync-metrics"));
        let labels = service["metadata"]["labels"].as_object().expect("labels");
        for (k, v) in &selector {
            assert_eq!(
                labels.get(k),
                Some(v),
                "the ServiceMonitor selects {services}"
            );
        }
        let port = service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == endpoint_port.as_str())
            .unwrap_or_else(|| panic!("{services} has a port named {endpoint_port}"));
        let pod = yaml_doc(workload);
        let template = &pod["spec"]["template"];
        let pod_labels = template["metadata"]["labels"]
            .as_object()
            .expect("pod labels");
        for (k, v) in service["spec"]["selector"].as_object().expect("selector") {
            assert_eq!(
                pod_labels.get(k),
                Some(v),
                "{services} selects the pods of {workload}"
            );
        }
        let target = str_at(port, "/targetPort");
        let vecsync = template["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .find(|c| c["name"] == "vecsync")
            .expect("vecsync container");
        assert!(
            vecsync["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .any(|p| p["name"] == target),
            "{services}'s targetPort {target} is a port of the vecsync container"
        );
    }
}
