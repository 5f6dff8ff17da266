//! A TCP proxy between vecsync and a test server, to make the network misbehave on purpose:
//! silently stop forwarding (like a network that drops packets without resetting anything),
//! close a connection after so many bytes, or rewrite the MySQL packets the server sends (to
//! make a fixture event out of a real one).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Changes a MySQL packet's payload (without its 4-byte header) on its way to the client.
pub type Rewrite = Arc<dyn Fn(&mut Vec<u8>) + Send + Sync>;

/// How the proxy treats the connections it forwards.
#[derive(Clone, Default)]
pub struct ProxyOptions {
    /// Close a connection (both ends) once the server sent this many bytes on it.
    pub close_after_bytes: Option<usize>,
    /// Rewrite every packet the server sends (TLS and compression must be off).
    pub rewrite: Option<Rewrite>,
}

/// Forwards 127.0.0.1:`port()` to 127.0.0.1:`target`.
pub struct SilentProxy {
    port: u16,
    accepted: Arc<AtomicUsize>,
    /// The cut switch of each connection accepted so far, in order.
    switches: Arc<Mutex<Vec<CancellationToken>>>,
    stop: CancellationToken,
}

impl SilentProxy {
    /// A proxy that forwards faithfully until told otherwise.
    pub async fn start(target: u16) -> Self {
        Self::start_with(target, ProxyOptions::default()).await
    }

    pub async fn start_with(target: u16, options: ProxyOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let switches = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (acc, sw, st) = (accepted.clone(), switches.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    () = st.cancelled() => return,
                    r = listener.accept() => match r { Ok(c) => c, Err(_) => return },
                };
                let cut = CancellationToken::new();
                sw.lock().await.push(cut.clone());
                acc.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                let options = options.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    // The halves stay owned here: a cut connection keeps its sockets open.
                    let (mut client_read, mut server_write) = (client_read, server_write);
                    let (mut server_read, mut client_write) = (server_read, client_write);
                    let up = tokio::io::copy(&mut client_read, &mut server_write);
                    let down = forward_down(&mut server_read, &mut client_write, &options);
                    tokio::select! {
                        () = st.cancelled() => {}
                        _ = up => {}
                        () = down => {}
                        () = cut.cancelled() => {
                            // Keep both sockets open and forward nothing, until the proxy ends.
                            st.cancelled().await;
                        }
                    }
                });
            }
        });
        Self {
            port,
            accepted,
            switches,
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for `user` through the proxy, over TCP only (no switch to the server's socket).
    pub fn url(&self, user: &str) -> String {
        format!("mysql://{user}@127.0.0.1:{}?prefer_socket=false", self.port)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stop forwarding on every existing connection (new ones still work).
    pub async fn cut(&self) {
        for switch in self.switches.lock().await.iter() {
            switch.cancel();
        }
    }

    /// Stop forwarding on the newest connection only.
    pub async fn cut_latest(&self) {
        if let Some(switch) = self.switches.lock().await.last() {
            switch.cancel();
        }
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Server to client: byte for byte, or packet by packet when rewriting; ends (closing the
/// connection) at the byte limit or when either side closes.
async fn forward_down<R, W>(from: &mut R, to: &mut W, options: &ProxyOptions)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut budget = options.close_after_bytes.unwrap_or(usize::MAX);
    loop {
        let chunk = match &options.rewrite {
            None => {
                let mut buf = vec![0u8; 64 * 1024];
                match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        buf
                    }
                }
            }
            Some(rewrite) => {
                let mut header = [0u8; 4];
                if from.read_exact(&mut header).await.is_err() {
                    return;
                }
                let len = usize::from(header[0])
                    | usize::from(header[1]) << 8
                    | usize::from(header[2]) << 16;
                let mut payload = vec![0u8; len];
                if from.read_exact(&mut payload).await.is_err() {
                    return;
                }
                rewrite(&mut payload);
                let new_len = payload.len();
                let mut packet = Vec::with_capacity(new_len + 4);
                packet.extend_from_slice(&[
                    (new_len & 0xff) as u8,
                    ((new_len >> 8) & 0xff) as u8,
                    ((new_len >> 16) & 0xff) as u8,
                    header[3],
                ]);
                packet.extend_from_slice(&payload);
                packet
            }
        };
        let n = chunk.len().min(budget);
        if to.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        budget -= n;
        if budget == 0 {
            // Close both directions: the client sees the connection end mid-packet.
            let _ = to.shutdown().await;
            return;
        }
    }
}

/// The binlog event inside a packet the server sent on a replication stream: `Some((type,
/// header))` where `header` is the event's 19 header bytes (after the packet's OK byte), when the
/// payload looks like one (OK byte, then an event whose size field matches the payload).
pub fn binlog_event(payload: &mut [u8]) -> Option<(u8, &mut [u8])> {
    if payload.len() < 20 || payload[0] != 0 {
        return None;
    }
    let size = u32::from_le_bytes([payload[10], payload[11], payload[12], payload[13]]) as usize;
    if size != payload.len() - 1 {
        return None;
    }
    let ty = payload[5];
    Some((ty, &mut payload[1..20]))
}
