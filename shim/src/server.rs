//! The HTTP/1.1 server: accept loop with a connection limit, hyper connection
//! settings (header size and count limits, header read timeout), graceful
//! shutdown, a handler's panic answered as a 500, and [`GuardedIo`], which
//! turns hyper's own bare answers to unparseable requests into JSON and drains
//! a closing connection so that the client reads the answer instead of a TCP
//! reset.

use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::App;
use crate::errors::ApiError;
use crate::errors::Body;

/// Largest request head (request line + headers) accepted: beyond it, 431.
pub const MAX_HEAD: usize = 32 * 1024;
/// Most header fields in one request: beyond it, 431.
pub const MAX_HEADERS: usize = 64;
/// How long a client may take to send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this much unread input is discarded (for at most `LINGER_TIME`)
/// after the answer, before the socket is closed.
const LINGER_BYTES: usize = 4 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Serve `listener` with `handle` (the API router, or the metrics-only one)
/// until `shutdown` completes.
pub async fn serve<H, F>(
    listener: TcpListener,
    app: Arc<App>,
    handle: H,
    max_connections: usize,
    shutdown_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) where
    H: Fn(Arc<App>, hyper::Request<hyper::body::Incoming>) -> F + Copy + Send + Sync + 'static,
    F: std::future::Future<Output = hyper::Response<Body>> + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(max_connections));
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(GuardedIo::new(stream, permit));
        let app = app.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            async move {
                // The handler runs in the connection's task, where hyper polls
                // it: no task of its own to allocate, schedule and wake (what
                // a spawned one cost every route: README, Performance).
                // A panic still becomes a 500 JSON answer, not a dropped
                // connection. A client that hangs up cancels its request at
                // the next await, as the request deadline already can: the
                // handlers hold nothing across an await that a drop leaves
                // half done (an admin transaction rolls back when dropped).
                let handled = AssertUnwindSafe(handle(app, req)).catch_unwind().await;
                let res = handled.unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<&str>()
                        .copied()
                        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                        .unwrap_or("(not text)");
                    tracing::error!(panic = message, "request handler panicked");
                    ApiError::internal().into_response()
                });
                Ok::<_, std::convert::Infallible>(res)
            }
        });
        let conn = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!("shutting down: no new connections, waiting for in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(shutdown_timeout) => tracing::warn!("shutdown timeout: closing remaining connections"),
    }
}

/// hyper answers a request it cannot parse by itself, with an empty body:
/// rewrite such an answer as JSON. Returns the replacement bytes.
/// Every answer goes through here, so the common case is decided first and in
/// constant time: hyper's bare answers are all 4xx heads with nothing after
/// them, and every answer of ours has a body or a content type.
fn rewrite_protocol_error(buf: &[u8]) -> Option<Vec<u8>> {
    if !(buf.starts_with(b"HTTP/1.1 4") || buf.starts_with(b"HTTP/1.0 4")) || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if head_end != buf.len() {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?.to_ascii_lowercase();
    if head.contains("content-type:") || !head.contains("content-length: 0\r\n") {
        return None;
    }
    let status = head.get(9..12)?;
    let (line, message) = match status {
        "400" => ("400 Bad Request", "Bad request: the request could not be parsed as HTTP/1.1"),
        "414" => ("414 URI Too Long", "Request URI too long"),
        "431" => ("431 Request Header Fields Too Large", "Request header fields too large (at most 32 KiB and 64 fields)"),
        _ => return None,
    };
    let body = serde_json::json!({ "error": message }).to_string();
    Some(
        format!(
            "HTTP/1.1 {line}\r\ncontent-type: application/json\r\ncache-control: no-store\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// A client connection as hyper sees it. Writes of hyper's automatic
/// parse-error answers are replaced by JSON ones; on drop, the socket lingers
/// (output flushed, write side shut, unread input discarded for a bounded time)
/// so that a client still uploading reads the answer rather than a reset.
pub struct GuardedIo {
    inner: Option<TcpStream>,
    pending: Vec<u8>,
    pending_pos: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl GuardedIo {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit) -> Self {
        GuardedIo { inner: Some(stream), pending: Vec::new(), pending_pos: 0, permit: Some(permit) }
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.inner.as_mut().ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_pos < self.pending.len() {
            let (pos, pending) = (self.pending_pos, std::mem::take(&mut self.pending));
            let r = Pin::new(self.stream()?).poll_write(cx, &pending[pos..]);
            self.pending = pending;
            match ready!(r) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.pending_pos += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(replacement) = rewrite_protocol_error(buf) {
            self.pending = replacement;
            self.pending_pos = 0;
            // The rest goes out on flush/shutdown (or from the linger task).
            let _ = self.poll_pending(cx);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(self.stream()?).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(self.stream()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(self.stream()?).poll_shutdown(cx)
    }

    // Not vectored: hyper then hands over each answer as one contiguous
    // buffer, which is what `rewrite_protocol_error` inspects.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        let Some(mut stream) = self.inner.take() else { return };
        let pending = std::mem::take(&mut self.pending);
        let pos = self.pending_pos;
        let permit = self.permit.take();
        // Cheap exit: the peer already closed and nothing is left to send.
        let mut probe = [0u8; 1];
        if pos >= pending.len() && matches!(stream.try_read(&mut probe), Ok(0)) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        handle.spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(LINGER_TIME, async {
                if pos < pending.len() {
                    stream.write_all(&pending[pos..]).await?;
                }
                stream.shutdown().await?;
                let mut sink = vec![0u8; 16 * 1024];
                let mut drained = 0;
                while drained < LINGER_BYTES {
                    match stream.read(&mut sink).await? {
                        0 => break,
                        n => drained += n,
                    }
                }
                Ok::<_, io::Error>(())
            })
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test server's routes: `/panic` panics, anything else answers 200.
    async fn panicky(_: Arc<App>, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Body> {
        if req.uri().path() == "/panic" {
            panic!("a handler bug");
        }
        hyper::Response::new(Body::new(bytes::Bytes::from_static(b"ok")))
    }

    /// Read one answer from a keep-alive connection: (status line, body).
    async fn read_answer(stream: &mut TcpStream) -> (String, String) {
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n =
                tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await.expect("an answer in time").unwrap();
            assert!(n > 0, "connection closed; read so far: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                .expect("content-length");
            if body.len() >= length {
                return (head.lines().next().unwrap().to_string(), body.to_string());
            }
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_json_and_the_connection_lives_on() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::new(App::for_tests()), panicky, 8, Duration::from_secs(1), async {
            let _ = stopped.await;
        }));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        let (status, body) = read_answer(&mut client).await;
        assert_eq!(status, "HTTP/1.1 500 Internal Server Error");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "Internal server error");
        // The same connection still serves the next request.
        client.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        assert_eq!(read_answer(&mut client).await, ("HTTP/1.1 200 OK".to_string(), "ok".to_string()));
        let _ = stop.send(());
        server.await.unwrap();
    }

    #[test]
    fn bare_parse_error_answers_become_json() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(rewrite_protocol_error(bare).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 431 "));
        assert!(out.contains("content-type: application/json"));
        assert!(out.ends_with("}"));
        // Our own answers are never touched.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(rewrite_protocol_error(ours).is_none());
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nxx";
        assert!(rewrite_protocol_error(with_body).is_none());
        assert!(rewrite_protocol_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
