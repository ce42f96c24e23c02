//! The HTTP accept loop: hyper with a timer, so a client that stalls inside its request headers
//! (slowloris) is cut off after `--server-timeout`, which `axum::serve` does not do. Connections
//! are drained gracefully on shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::http::HttpApi;

/// A source of accepted connections.
pub(crate) enum Connections {
    /// Plain TCP.
    Tcp(TcpListener),
    /// Connections whose TLS handshake has completed (see `tls::spawn_acceptor`).
    Tls(mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>),
}

enum Accepted {
    Tcp(TcpStream, SocketAddr),
    Tls(Box<TlsStream<TcpStream>>, SocketAddr),
}

impl Connections {
    async fn next(&mut self) -> Option<Accepted> {
        match self {
            Connections::Tcp(listener) => loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        if let Err(e) = stream.set_nodelay(true) {
                            debug!(error = %e, "setting TCP_NODELAY failed");
                        }
                        return Some(Accepted::Tcp(stream, peer));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            },
            Connections::Tls(receiver) => receiver
                .recv()
                .await
                .map(|(stream, peer)| Accepted::Tls(Box::new(stream), peer)),
        }
    }
}

/// Serves `api` on `connections` until `stop`, then waits for open connections to finish.
pub(crate) async fn serve(
    mut connections: Connections,
    api: HttpApi,
    timeout: Duration,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(timeout))
        .keep_alive_timeout(timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = connections.next() => accepted,
        };
        let Some(accepted) = accepted else { break };
        match accepted {
            Accepted::Tcp(stream, peer) => {
                spawn_connection(&builder, &graceful, stream, peer, &api);
            }
            Accepted::Tls(stream, peer) => {
                spawn_connection(&builder, &graceful, *stream, peer, &api);
            }
        }
    }
    drop(connections);
    graceful.shutdown().await;
    Ok(())
}

fn spawn_connection<I>(
    builder: &Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    io: I,
    peer: SocketAddr,
    api: &HttpApi,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = api.connection(peer);
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(error = %e, "connection ended with an error");
        }
    });
}
