//! A private `mariadbd` per test: a fresh datadir from `mariadb-install-db`, a free port on
//! 127.0.0.1, the repository's `mariadb-conf/custom.cnf` (binlog on, ROW, FULL row image and
//! metadata) plus per-test overrides. Killed and removed when the value is dropped.
//!
//! `root@127.0.0.1` has no password; tests create their own less-privileged users when they need
//! one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use super::{free_port, wait_until};

/// How long a server gets to accept its first query.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// A running private MariaDB server.
pub struct MariaDb {
    dir: tempfile::TempDir,
    port: u16,
    overrides: Vec<String>,
    child: Option<Child>,
}

impl MariaDb {
    /// A server configured exactly as `mariadb-conf/custom.cnf` says.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A server with extra `[mysqld]` settings after custom.cnf's, which they override
    /// (e.g. `"binlog_format=STATEMENT"`, `"skip-log-bin"`, `"log_bin_compress=ON"`).
    pub async fn start_with(overrides: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vecsync-mariadb-")
            .tempdir()
            .expect("create a temporary directory for mariadbd");
        // A private tmpdir: mariadbd deletes other servers' `#sql*` files from a shared one at
        // startup, which breaks a concurrent mariadb-install-db.
        std::fs::create_dir(dir.path().join("tmp")).expect("create tmpdir");
        install_db(&dir.path().join("data"), &dir.path().join("tmp"));
        let mut server = Self {
            dir,
            port: 0,
            overrides: overrides.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        server.launch_on_a_free_port().await;
        server
    }

    /// `mysql://root@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// The URL for another user, without a password (tests pass passwords separately).
    pub fn url_for(&self, user: &str) -> String {
        format!("mysql://{user}@127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's data directory (binlog files live there).
    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A new root connection.
    pub async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(self.url())
            .await
            .expect("connect to the test mariadbd as root")
    }

    /// Run `sql` (one or more statements) on a fresh root connection.
    pub async fn exec(&self, sql: &str) {
        let mut conn = self.conn().await;
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("test SQL failed: {e}\n{sql}"));
        conn.disconnect().await.expect("disconnect");
    }

    /// The first column of the first row of `sql`, as a string (`None` for no row or NULL).
    pub async fn query_one(&self, sql: &str) -> Option<String> {
        let mut conn = self.conn().await;
        let row: Option<mysql_async::Row> = conn
            .query_first(sql)
            .await
            .unwrap_or_else(|e| panic!("test query failed: {e}\n{sql}"));
        conn.disconnect().await.expect("disconnect");
        row.and_then(|mut r| r.take::<Option<String>, _>(0).flatten())
    }

    /// `@@gtid_binlog_pos`: the position after the last transaction written to the binlog.
    pub async fn gtid_binlog_pos(&self) -> String {
        self.query_one("SELECT @@gtid_binlog_pos")
            .await
            .unwrap_or_default()
    }

    /// Start a new binlog file and purge every older one, so positions before now are gone.
    /// MariaDB keeps a file until its binlog checkpoint is written (for crash recovery), so
    /// this retries the PURGE until only the newest file is left.
    pub async fn purge_binary_logs(&self) {
        let mut conn = self.conn().await;
        conn.query_drop("FLUSH BINARY LOGS")
            .await
            .expect("flush binary logs");
        let conn = std::sync::Arc::new(tokio::sync::Mutex::new(conn));
        wait_until(
            "the old binary logs to be purged",
            super::DEFAULT_DEADLINE,
            || {
                let conn = conn.clone();
                async move {
                    let mut conn = conn.lock().await;
                    let rows: Vec<mysql_async::Row> = conn
                        .query("SHOW BINARY LOGS")
                        .await
                        .expect("show binary logs");
                    let names: Vec<String> = rows.iter().filter_map(|r| r.get(0)).collect();
                    let newest = names.last().expect("at least one binary log").clone();
                    if names.len() == 1 {
                        return Some(());
                    }
                    conn.query_drop(format!("PURGE BINARY LOGS TO '{newest}'"))
                        .await
                        .expect("purge binary logs");
                    None
                }
            },
        )
        .await;
    }

    /// Kill the server with SIGKILL, keeping its datadir and port for [`MariaDb::restart`].
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same datadir and port (after [`MariaDb::kill9`]).
    pub async fn restart(&mut self) {
        self.kill9();
        // The old process is gone, so the port is normally free again; a stray listener would
        // show up as a startup failure with the server's log attached.
        if let Err(log) = self.launch().await {
            panic!("mariadbd did not restart on port {}:\n{log}", self.port);
        }
    }

    /// The server's error log so far, for failure messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    async fn launch_on_a_free_port(&mut self) {
        // Another process may take the free port between our probe and mariadbd's bind: try a
        // few ports before giving up.
        let mut last_log = String::new();
        for _ in 0..3 {
            self.port = free_port();
            match self.launch().await {
                Ok(()) => return,
                Err(log) => last_log = log,
            }
        }
        panic!("mariadbd did not start:\n{last_log}");
    }

    /// Write the defaults file, spawn mariadbd and wait until it answers a query. On failure the
    /// process is gone and the error log is returned.
    async fn launch(&mut self) -> Result<(), String> {
        let cnf = self.write_defaults_file();
        let child = Command::new(binary("mariadbd"))
            .arg(format!("--defaults-file={}", cnf.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd (apt-get install mariadb-server, or run scripts/test)");
        self.child = Some(child);
        let url = self.url();
        let mut exited = false;
        let ready = wait_until("mariadbd to accept queries", STARTUP_DEADLINE, || {
            let url = url.clone();
            let status = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if status.is_some() {
                exited = true;
            }
            async move {
                if status.is_some() {
                    return Some(false);
                }
                let mut conn = mysql_async::Conn::from_url(url).await.ok()?;
                let ok = conn.query_drop("SELECT 1").await.is_ok();
                let _ = conn.disconnect().await;
                ok.then_some(true)
            }
        })
        .await;
        if ready && !exited {
            Ok(())
        } else {
            self.kill9();
            Err(self.error_log())
        }
    }

    fn write_defaults_file(&self) -> PathBuf {
        let base = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("mariadb-conf/custom.cnf"),
        )
        .expect("read mariadb-conf/custom.cnf");
        let dir = self.dir.path();
        let mut cnf = base;
        cnf.push_str("\n# Added by the test harness.\n[mysqld]\n");
        for line in [
            format!("datadir={}", dir.join("data").display()),
            format!("port={}", self.port),
            "bind-address=127.0.0.1".to_owned(),
            format!("socket={}", dir.join("mysqld.sock").display()),
            format!("pid-file={}", dir.join("mysqld.pid").display()),
            format!("log-error={}", dir.join("error.log").display()),
            format!("tmpdir={}", dir.join("tmp").display()),
            "innodb_buffer_pool_size=16M".to_owned(),
            "innodb_log_file_size=4M".to_owned(),
            "skip-name-resolve".to_owned(),
        ] {
            cnf.push_str(&line);
            cnf.push('\n');
        }
        if is_root() {
            cnf.push_str("user=root\n");
        }
        for line in &self.overrides {
            cnf.push_str(line);
            cnf.push('\n');
        }
        let path = dir.join("my.cnf");
        std::fs::write(&path, cnf).expect("write my.cnf");
        path
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Create an empty datadir (about 0.6 s).
fn install_db(datadir: &Path, tmpdir: &Path) {
    let mut cmd = Command::new(binary("mariadb-install-db"));
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--tmpdir={}", tmpdir.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            "--innodb-log-file-size=4M",
            "--innodb-buffer-pool-size=16M",
        ]);
    if is_root() {
        cmd.arg("--user=root");
    }
    let out = cmd
        .output()
        .expect("run mariadb-install-db (apt-get install mariadb-server, or run scripts/test)");
    assert!(
        out.status.success(),
        "mariadb-install-db failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Debian puts mariadbd in /usr/sbin, which is not on every user's PATH.
fn binary(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
