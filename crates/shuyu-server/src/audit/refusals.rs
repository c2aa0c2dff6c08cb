//! Transport-level refusals, counted and audited: TLS handshakes refused (no client
//! certificate, one from another CA, an expired one), connections that do not speak HTTP/2,
//! and gRPC requests refused before any handler ran (an unknown method, a message that does
//! not decode or is too large). None reaches [`crate::state::Calls::begin`], which audits
//! every call that does. They are counted per peer address and reason and written at most
//! once a minute as one `transport_refused` record per (peer, reason) with its count, so a
//! flood cannot fill the trail.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::codegen::http;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

use crate::error::Result;
use crate::store::Store;

/// The audit action of an aggregated refusal record.
pub const ACTION: &str = "transport_refused";

/// Refusals counted since the last flush, per (peer address, reason), and the open
/// connections whose client certificate was refused.
#[derive(Debug, Default)]
pub struct Refusals {
    counts: Mutex<BTreeMap<(String, String), u64>>,
    refused_connections: Mutex<HashMap<SocketAddr, String>>,
}

impl Refusals {
    /// Notes that the open connection from `peer` was refused for `reason`: every request on
    /// it is answered UNAUTHENTICATED with the reason.
    pub fn refuse_connection(&self, peer: SocketAddr, reason: String) {
        self.count(Some(peer.ip()), &reason);
        self.refused_connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(peer, reason);
    }

    fn refusal_of(&self, peer: SocketAddr) -> Option<String> {
        self.refused_connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&peer)
            .cloned()
    }

    fn connection_closed(&self, peer: SocketAddr) {
        self.refused_connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&peer);
    }

    /// Counts one refusal of `peer` for `reason`.
    pub fn count(&self, peer: Option<IpAddr>, reason: &str) {
        let peer = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
        tracing::info!(%peer, reason, "refused at the transport");
        *self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry((peer, reason.to_owned()))
            .or_default() += 1;
    }

    /// Writes one audit record per (peer, reason) counted since the last flush; returns how
    /// many. Counts that could not be written are kept for the next flush.
    ///
    /// # Errors
    /// On store failure.
    pub fn flush(&self, store: &Store) -> Result<usize> {
        let taken = std::mem::take(
            &mut *self
                .counts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let n = taken.len();
        let mut entries = taken.into_iter();
        while let Some(((peer, reason), count)) = entries.next() {
            let entry = crate::audit::trail::AuditEntry {
                principal_id: "-".into(),
                role: "-".into(),
                tenant_id: String::new(),
                action: ACTION.into(),
                target: format!("peer:{peer}"),
                outcome: "denied".into(),
                detail: json!({"reason": reason, "count": count}),
                secret_detail: None,
            };
            if let Err(e) = store.record(&entry) {
                let mut counts = self
                    .counts
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                *counts.entry((peer, reason)).or_default() += count;
                for (key, count) in entries {
                    *counts.entry(key).or_default() += count;
                }
                return Err(e);
            }
        }
        Ok(n)
    }
}

/// Why a TLS handshake was refused, in words for the trail.
pub fn handshake_reason(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => crate::tls::refusal_reason(tls),
        None => "the TLS handshake failed".into(),
    }
}

/// An accepted TLS connection that counts itself as refused when its first bytes are not
/// the HTTP/2 connection preface (garbage or another protocol over TLS).
#[derive(Debug)]
pub struct Watched<IO> {
    inner: IO,
    peer: Option<SocketAddr>,
    refusals: Arc<Refusals>,
    /// Bytes of the preface matched so far; `None` once decided.
    preface_seen: Option<usize>,
}

impl<IO> Drop for Watched<IO> {
    fn drop(&mut self) {
        if let Some(peer) = self.peer {
            self.refusals.connection_closed(peer);
        }
    }
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl<IO> Watched<IO> {
    /// Watches `inner`, a connection from `peer`.
    pub fn new(inner: IO, peer: Option<SocketAddr>, refusals: Arc<Refusals>) -> Watched<IO> {
        Watched {
            inner,
            peer,
            refusals,
            preface_seen: Some(0),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(seen)) = (&polled, self.preface_seen) {
            let new = &buf.filled()[before..];
            let want = &PREFACE[seen..];
            let n = new.len().min(want.len());
            if new[..n] != want[..n] {
                self.preface_seen = None;
                let peer = self.peer.map(|p| p.ip());
                self.refusals
                    .count(peer, "a connection that does not speak HTTP/2 (gRPC)");
            } else if seen + n == PREFACE.len() {
                self.preface_seen = None;
            } else if n > 0 {
                self.preface_seen = Some(seen + n);
            }
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<IO: Connected> Connected for Watched<IO> {
    type ConnectInfo = IO::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Set by [`crate::state::Calls::begin`] on the request it sees: a response with an error
/// status to a request that never reached it was refused before any handler ran.
#[derive(Debug, Clone, Default)]
pub struct HandlerReached(Arc<AtomicBool>);

impl HandlerReached {
    /// Marks the request as handled (audited by its handler).
    pub fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The layer that counts requests refused before a handler ran.
#[derive(Debug, Clone)]
pub struct RefusalLayer {
    refusals: Arc<Refusals>,
}

impl RefusalLayer {
    /// Counts into `refusals`.
    pub fn new(refusals: Arc<Refusals>) -> RefusalLayer {
        RefusalLayer { refusals }
    }
}

impl<S> tower_layer::Layer<S> for RefusalLayer {
    type Service = RefusalService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RefusalService {
            inner,
            refusals: Arc::clone(&self.refusals),
        }
    }
}

/// See [`RefusalLayer`].
#[derive(Debug, Clone)]
pub struct RefusalService<S> {
    inner: S,
    refusals: Arc<Refusals>,
}

fn peer_of<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.get_ref().remote_addr())
}

impl<S, B, R> tonic::codegen::Service<http::Request<B>> for RefusalService<S>
where
    S: tonic::codegen::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let peer = peer_of(&request);
        // A connection whose client certificate was refused: the reason, nothing else.
        if let Some(reason) = peer.and_then(|p| self.refusals.refusal_of(p)) {
            let response = tonic::Status::unauthenticated(reason).into_http::<R>();
            return Box::pin(async move { Ok(response) });
        }
        let reached = HandlerReached::default();
        request.extensions_mut().insert(reached.clone());
        let peer = peer.map(|p| p.ip());
        let path = request.uri().path().to_owned();
        let refusals = Arc::clone(&self.refusals);
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let status = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(0);
            if status != 0 && !reached.0.load(Ordering::Relaxed) {
                let code = tonic::Code::from_i32(status);
                // Only the method's name: never a message, which may echo the request.
                let method = path.rsplit('/').next().unwrap_or_default();
                refusals.count(
                    peer,
                    &format!("a request refused before any handler ran ({code:?}, {method})"),
                );
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_connection_that_does_not_start_with_the_http2_preface_is_counted() {
        let refusals = Arc::new(Refusals::default());
        let read = |bytes: &'static [u8]| {
            let refusals = Arc::clone(&refusals);
            async move {
                let mut watched = Watched::new(bytes, None, refusals);
                let mut out = Vec::new();
                watched.read_to_end(&mut out).await.unwrap();
            }
        };
        read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nframes").await;
        assert!(refusals.counts.lock().unwrap().is_empty());
        read(b"GET / HTTP/1.1\r\n\r\n").await;
        read(b"\x00\x01garbage").await;
        let counts = refusals.counts.lock().unwrap();
        assert_eq!(counts.values().sum::<u64>(), 2, "{counts:?}");
    }
}
