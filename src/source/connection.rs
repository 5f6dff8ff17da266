//! Connecting to MariaDB: options from the URL plus a password that never appears in a URL, a
//! log or an error message, login failures told apart from unreachable servers, several servers
//! to fail over between, and a read timeout on every query.
//!
//! # Several servers
//! A URL may list several hosts (`mysql://user@db1:3306,db2:3306/?require_ssl=true`); each
//! becomes an [`Endpoint`] with the URL's user and options, in order, followed by those of any
//! further URLs. The replicator tries them in that order on every (re)connect.
//!
//! # Limits
//! Every connection accepts packets up to MariaDB's 1 GiB maximum: the dump thread sends binlog
//! events of any size up to that whatever the session's `max_allowed_packet` is, and a snapshot
//! may read rows that large. Every query waits at most the configured read timeout for an answer
//! ([`timed`]): a connection that went silent (a half-open TCP connection) is given up instead
//! of waiting for the operating system's keepalive.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use crate::config::{Secret, redact_url};

use super::error::SourceError;

/// How long a connection attempt may take, handshake and login included.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// MariaDB's largest packet (`MAX_MAX_ALLOWED_PACKET`), the largest binlog event it sends.
pub(crate) const MAX_PACKET: usize = 1024 * 1024 * 1024;

/// Where and as whom to connect.
#[derive(Clone)]
pub(crate) struct Endpoint {
    opts: mysql_async::Opts,
    /// The URL with any password replaced by `***`.
    pub url: String,
    pub user: String,
    /// How long a query may wait for its answer.
    pub read_timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// One endpoint per host of each URL, in order (see the module documentation).
pub(crate) fn endpoints(
    urls: &[String],
    password: Option<&Secret>,
    ssl_ca: Option<&Path>,
    read_timeout: Duration,
) -> Result<Vec<Endpoint>, SourceError> {
    let mut out = Vec::new();
    for url in urls {
        for single in split_hosts(url).map_err(|reason| SourceError::Url {
            url: redact_url(url),
            reason,
        })? {
            let mut endpoint = Endpoint::new(&single, password, ssl_ca)?;
            endpoint.read_timeout = read_timeout;
            out.push(endpoint);
        }
    }
    if out.is_empty() {
        return Err(SourceError::Url {
            url: String::new(),
            reason: "no MariaDB server given".into(),
        });
    }
    Ok(out)
}

/// `mysql://user@h1:1,h2:2/db?x` -> `mysql://user@h1:1/db?x`, `mysql://user@h2:2/db?x`.
pub(crate) fn split_hosts(url: &str) -> Result<Vec<String>, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(vec![url.to_owned()]);
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut out = Vec::new();
    for host in hosts.split(',') {
        let host = host.trim();
        if host.is_empty() {
            return Err("an empty host in the list of hosts".into());
        }
        out.push(match userinfo {
            Some(u) => format!("{scheme}://{u}@{host}{tail}"),
            None => format!("{scheme}://{host}{tail}"),
        });
    }
    Ok(out)
}

impl Endpoint {
    /// `url` is `mysql://user[:password]@host:port[/db][?options]`; `password`, when given,
    /// replaces any password in the URL. `ssl_ca`, when given, turns TLS on and verifies the
    /// server's certificate against that CA (PEM) as well as the built-in roots.
    pub(crate) fn new(
        url: &str,
        password: Option<&Secret>,
        ssl_ca: Option<&Path>,
    ) -> Result<Self, SourceError> {
        let redacted = redact_url(url);
        let opts = mysql_async::Opts::from_url(url).map_err(|e| SourceError::Url {
            url: redacted.clone(),
            reason: e.to_string(),
        })?;
        let user = opts.user().unwrap_or("").to_owned();
        let mut builder = mysql_async::OptsBuilder::from_opts(opts)
            // Notice a dead peer even when no heartbeat is due.
            .tcp_keepalive(Some(Duration::from_secs(10)))
            // The session's max_allowed_packet (16 MiB by default) is not what the server sends.
            .max_allowed_packet(Some(MAX_PACKET));
        if let Some(p) = password {
            builder = builder.pass(Some(p.expose()));
        }
        if let Some(ca) = ssl_ca {
            if !ca.is_file() {
                return Err(SourceError::Url {
                    url: redacted,
                    reason: format!(
                        "the CA certificate {} (--mariadb-ssl-ca) is not a readable file",
                        ca.display()
                    ),
                });
            }
            // Keep TLS options given in the URL (verify_identity, ...) and add the CA.
            let tls = opts_ssl(&builder).with_root_certs(vec![ca.to_path_buf().into()]);
            builder = builder.ssl_opts(Some(tls));
        }
        Ok(Self {
            opts: builder.into(),
            url: redacted,
            user,
            read_timeout: DEFAULT_READ_TIMEOUT,
        })
    }

    /// Open a connection. Wrong credentials are definite; anything else is worth a retry.
    /// A server that accepts the TCP connection but never answers (frozen, overloaded) counts
    /// as unreachable after [`CONNECT_TIMEOUT`].
    pub(crate) async fn connect(&self) -> Result<mysql_async::Conn, SourceError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, mysql_async::Conn::new(self.opts.clone())).await
        {
            Ok(result) => result.map_err(|e| self.login_error(e)),
            Err(_) => Err(SourceError::Connect {
                url: self.url.clone(),
                cause: Box::new(timed_out(CONNECT_TIMEOUT)),
            }),
        }
    }

    pub(crate) fn login_error(&self, e: mysql_async::Error) -> SourceError {
        match &e {
            // ER_ACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR, ER_ACCOUNT_HAS_BEEN_LOCKED,
            // ER_MUST_CHANGE_PASSWORD(_LOGIN)
            mysql_async::Error::Server(s) if matches!(s.code, 1045 | 1044 | 3118 | 1820 | 1862) => {
                SourceError::AccessDenied {
                    url: self.url.clone(),
                    user: self.user.clone(),
                    message: s.message.clone(),
                }
            }
            // rustls reports every handshake failure (unknown issuer, wrong name, expired) as
            // InvalidData: a configuration problem that no reconnect will fix.
            mysql_async::Error::Io(mysql_async::IoError::Io(io))
                if io.kind() == std::io::ErrorKind::InvalidData =>
            {
                SourceError::Tls {
                    url: self.url.clone(),
                    message: io.to_string(),
                }
            }
            mysql_async::Error::Server(s) if s.code == 1049 => SourceError::Url {
                url: self.url.clone(),
                reason: s.message.clone(),
            },
            _ => SourceError::Connect {
                url: self.url.clone(),
                cause: Box::new(e),
            },
        }
    }

    /// Whether the connection is encrypted (`require_ssl` in the URL or `--mariadb-ssl-ca`).
    pub(crate) fn uses_tls(&self) -> bool {
        self.opts.ssl_opts().is_some()
    }

    /// A warning when a password would cross the network unencrypted: the login exchange (and
    /// with `enable_cleartext_plugin`, the password itself) and every row can be read on the
    /// way. Loopback and unix socket connections never leave the machine.
    pub(crate) fn plain_text_warning(&self) -> Option<String> {
        let has_password = self.opts.pass().is_some_and(|p| !p.is_empty());
        if !has_password || self.uses_tls() || self.opts.socket().is_some() {
            return None;
        }
        let host = self.opts.ip_or_hostname();
        let local = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if local {
            return None;
        }
        Some(format!(
            "the connection to MariaDB at {} is not encrypted: the login exchange for user {:?} \
             and every replicated row travel in plain text. Add ?require_ssl=true to the URL (and \
             --mariadb-ssl-ca for a private CA)",
            self.url, self.user
        ))
    }
}

/// How long a query waits for an answer unless configured otherwise.
pub(crate) const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The driver error a query that got no answer in time fails with: an I/O error, so it is
/// transient and the connection is replaced.
pub(crate) fn timed_out(limit: Duration) -> mysql_async::Error {
    mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "no answer from MariaDB within {} s (the connection is presumed dead)",
            limit.as_secs_f64()
        ),
    )))
}

/// Run one query (or any driver call) with a read timeout. After a timeout the connection is in
/// an unknown state: the caller must drop it, which the error path does.
pub(crate) async fn timed<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, mysql_async::Error> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(timed_out(limit)),
    }
}

/// The TLS options the URL asked for, or TLS with defaults when it asked for none.
fn opts_ssl(builder: &mysql_async::OptsBuilder) -> mysql_async::SslOpts {
    let opts: mysql_async::Opts = builder.clone().into();
    opts.ssl_opts().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_the_password() {
        let e =
            Endpoint::new("mysql://repl:hunter2@db.example:3306", None, None).expect("endpoint");
        assert_eq!(e.user, "repl");
        assert!(!format!("{e:?}").contains("hunter2"));
        assert!(!e.url.contains("hunter2"));
        let e = Endpoint::new(
            "mysql://repl@db.example:3306",
            Some(&Secret::new("s3cret")),
            None,
        )
        .expect("endpoint");
        assert!(!format!("{e:?} {}", e.url).contains("s3cret"));
        let err = Endpoint::new("mysql://u:pw@host:notaport", None, None).expect_err("bad url");
        assert!(!err.to_string().contains("pw@"), "{err}");
        assert!(!err.is_transient());
    }

    #[test]
    fn one_endpoint_per_host_in_order() {
        let urls = [
            "mysql://repl:pw@db1:3306,db2:3307/x?require_ssl=true".to_owned(),
            "mysql://other@db3".to_owned(),
        ];
        let all = endpoints(&urls, None, None, Duration::from_secs(5)).expect("endpoints");
        let seen: Vec<&str> = all.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(
            seen,
            [
                "mysql://repl:***@db1:3306/x?require_ssl=true",
                "mysql://repl:***@db2:3307/x?require_ssl=true",
                "mysql://other@db3"
            ]
        );
        assert!(all[0].uses_tls() && all[1].uses_tls() && !all[2].uses_tls());
        assert_eq!(all[2].read_timeout, Duration::from_secs(5));
        assert!(split_hosts("mysql://u@a,,b").is_err());
    }

    #[test]
    fn warns_about_passwords_over_plain_text_off_the_machine() {
        let pw = Secret::new("pw");
        let warn = |url: &str, password: Option<&Secret>| {
            Endpoint::new(url, password, None)
                .expect("endpoint")
                .plain_text_warning()
        };
        let w = warn("mysql://repl@db.example:3306", Some(&pw)).expect("plain text");
        assert!(
            w.contains("db.example") && w.contains("require_ssl") && !w.contains("pw@"),
            "{w}"
        );
        assert!(warn("mysql://repl@db.example:3306?require_ssl=true", Some(&pw)).is_none());
        assert!(
            warn("mysql://repl@127.0.0.1:3306", Some(&pw)).is_none(),
            "loopback"
        );
        assert!(
            warn("mysql://repl@localhost:3306", Some(&pw)).is_none(),
            "loopback"
        );
        assert!(
            warn("mysql://repl@db.example:3306", None).is_none(),
            "no password"
        );
        assert!(
            warn("mysql://repl:pw@10.0.0.5:3306", None).is_some(),
            "in the URL"
        );
    }
}
