//! A TCP proxy that can silently stop forwarding the connections it has, like a network that
//! drops packets without resetting anything: the way to test that a dead connection is noticed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Forwards 127.0.0.1:`port()` to 127.0.0.1:`target`.
pub struct SilentProxy {
    port: u16,
    accepted: Arc<AtomicUsize>,
    /// The cut switch of the connections accepted so far.
    current: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl SilentProxy {
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let current = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (acc, cur, st) = (accepted.clone(), current.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    () = st.cancelled() => return,
                    r = listener.accept() => match r { Ok(c) => c, Err(_) => return },
                };
                acc.fetch_add(1, Ordering::SeqCst);
                let cut = cur.lock().await.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        () = st.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
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
            current,
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stop forwarding on every existing connection (new ones still work).
    pub async fn cut(&self) {
        let mut current = self.current.lock().await;
        current.cancel();
        *current = CancellationToken::new();
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
