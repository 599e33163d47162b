//! A TCP proxy that can take a backend away: [`FaultProxy::cut`] resets every connection through
//! it and closes its port (new connections are refused) until [`FaultProxy::restore`] opens it
//! again: what a client sees while a broker, database or object store restarts. Processes under
//! test reach the backend through the proxy's port; the test itself keeps the direct route.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    /// Port on 127.0.0.1 to connect to instead of the backend's.
    pub port: u16,
    target: SocketAddr,
    /// Cancelled by `cut`: stops accepting and resets the connections of this generation.
    generation: Mutex<CancellationToken>,
}

impl FaultProxy {
    /// Starts forwarding to `target`.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let token = CancellationToken::new();
        tokio::spawn(serve(listener, target, token.clone()));
        Ok(Self {
            port,
            target,
            generation: Mutex::new(token),
        })
    }

    /// Resets every connection and refuses new ones.
    pub fn cut(&self) {
        self.generation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .cancel();
    }

    /// Accepts connections again on the same port.
    ///
    /// # Errors
    /// When the port cannot be bound again.
    pub async fn restore(&self) -> anyhow::Result<()> {
        let mut last = None;
        for _ in 0..50 {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => {
                    let token = CancellationToken::new();
                    *self
                        .generation
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = token.clone();
                    tokio::spawn(serve(listener, self.target, token));
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(anyhow::anyhow!(
            "cannot reopen port {}: {last:?}",
            self.port
        ))
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn serve(listener: TcpListener, target: SocketAddr, cut: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            // Dropping the listener closes the port.
            () = cut.cancelled() => return,
        };
        let Ok((mut client, _)) = accepted else {
            return;
        };
        let cut = cut.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(target).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                () = cut.cancelled() => {
                    // Reset rather than close politely, like a dying server. A zero linger
                    // sends RST at once, so the drop does not block.
                    #[allow(deprecated)]
                    let _ = client.set_linger(Some(std::time::Duration::ZERO));
                }
            }
        });
    }
}
