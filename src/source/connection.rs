//! Connecting to MariaDB: options from the URL plus a password that never appears in a URL, a
//! log or an error message, and login failures told apart from unreachable servers.

use std::path::Path;
use std::time::Duration;

use crate::config::{Secret, redact_url};

use super::error::SourceError;

/// How long a connection attempt may take, handshake and login included.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and as whom to connect.
#[derive(Clone)]
pub(crate) struct Endpoint {
    opts: mysql_async::Opts,
    /// The URL with any password replaced by `***`.
    pub url: String,
    pub user: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
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
            .tcp_keepalive(Some(Duration::from_secs(10)));
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
                source: Box::new(mysql_async::Error::Io(mysql_async::IoError::Io(
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                    ),
                ))),
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
                source: Box::new(e),
            },
        }
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
}
