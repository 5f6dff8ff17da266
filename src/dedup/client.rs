//! Just enough of memcached's ASCII protocol for the embedding cache: many gets and many sets,
//! each as ONE round trip (every command of the batch written at once, then every answer read).
//!
//! The protocol is memcached's `protocol.txt`: `get <key>*` answers `VALUE <key> <flags> <bytes>`
//! lines each followed by the data, then `END`; `set <key> <flags> <exptime> <bytes>` followed by
//! the data answers `STORED` (or `NOT_STORED`, `SERVER_ERROR ...`, `CLIENT_ERROR ...`). The
//! connection is a plain TCP stream with read, write and connect timeouts; after any error it is
//! dropped, and the caller decides when to connect again.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Keys per `get` line: memcached accepts long lines, this keeps each under ~25 KB.
const KEYS_PER_GET: usize = 100;
/// Largest value this client accepts in an answer (a vector of 384 floats is about 8 KB).
const MAX_VALUE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected answer from memcached: {0}")]
    Protocol(String),
}

/// One connection to one memcached.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connect to `server` (`host:port`) with `timeout` for connecting, reading and writing.
    pub fn connect(server: &str, timeout: Duration) -> Result<Client, ClientError> {
        let mut last = None;
        for addr in server.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(timeout))?;
                    stream.set_write_timeout(Some(timeout))?;
                    stream.set_nodelay(true)?;
                    let writer = stream.try_clone()?;
                    return Ok(Client {
                        reader: BufReader::new(stream),
                        writer,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| std::io::Error::other(format!("{server} resolves to no address")))
            .into())
    }

    /// `version`: proves the server answers.
    pub fn version(&mut self) -> Result<String, ClientError> {
        self.writer.write_all(b"version\r\n")?;
        let line = self.line()?;
        match line.strip_prefix("VERSION ") {
            Some(version) => Ok(version.to_owned()),
            None => Err(ClientError::Protocol(line)),
        }
    }

    /// The values of the keys that are present.
    pub fn get_many(&mut self, keys: &[&str]) -> Result<HashMap<String, Vec<u8>>, ClientError> {
        let mut request = Vec::with_capacity(keys.len() * 96);
        let chunks: Vec<&[&str]> = keys.chunks(KEYS_PER_GET).collect();
        for chunk in &chunks {
            request.extend_from_slice(b"get");
            for key in *chunk {
                request.push(b' ');
                request.extend_from_slice(key.as_bytes());
            }
            request.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&request)?;
        let mut found = HashMap::new();
        for _ in &chunks {
            loop {
                let line = self.line()?;
                if line == "END" {
                    break;
                }
                let mut parts = line.split(' ');
                let (Some("VALUE"), Some(key), Some(_flags), Some(bytes)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(ClientError::Protocol(line));
                };
                let len: usize = bytes
                    .parse()
                    .ok()
                    .filter(|&n| n <= MAX_VALUE)
                    .ok_or_else(|| ClientError::Protocol(line.clone()))?;
                let mut data = vec![0; len + 2];
                self.reader.read_exact(&mut data)?;
                if !data.ends_with(b"\r\n") {
                    return Err(ClientError::Protocol(format!(
                        "value of {key} not ended by CRLF"
                    )));
                }
                data.truncate(len);
                found.insert(key.to_owned(), data);
            }
        }
        Ok(found)
    }

    /// Store every entry with `ttl_secs`. Returns how many the server did not store (it may
    /// refuse some, e.g. when full); an error means the connection is unusable.
    pub fn set_many(
        &mut self,
        entries: &[(&str, &[u8])],
        ttl_secs: u32,
    ) -> Result<usize, ClientError> {
        let mut request = Vec::with_capacity(entries.len() * 8300);
        for (key, value) in entries {
            request.extend_from_slice(
                format!("set {key} 0 {ttl_secs} {}\r\n", value.len()).as_bytes(),
            );
            request.extend_from_slice(value);
            request.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&request)?;
        let mut refused = 0;
        for _ in entries {
            let line = self.line()?;
            match line.as_str() {
                "STORED" => {}
                "NOT_STORED" => refused += 1,
                other if other.starts_with("SERVER_ERROR") => refused += 1,
                _ => return Err(ClientError::Protocol(line)),
            }
        }
        Ok(refused)
    }

    fn line(&mut self) -> Result<String, ClientError> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line)?;
        if n == 0 {
            return Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "memcached closed the connection",
            )));
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.starts_with("ERROR") || line.starts_with("CLIENT_ERROR") {
            return Err(ClientError::Protocol(line));
        }
        Ok(line)
    }
}
