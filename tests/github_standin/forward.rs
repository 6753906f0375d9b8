//! Webhook delivery: the `deployment` event the stand-in sends after a
//! created deployment, as GitHub does.

use super::*;
// Webhook delivery.

/// A `deployment` event to send.
pub(super) struct Delivery {
    pub(super) url: String,
    pub(super) secret: String,
    pub(super) body: Vec<u8>,
}

/// A response body that starts the delivery (on its own thread) once hyper
/// has taken the whole body, or when the response is dropped unsent.
pub(super) struct ThenDeliver {
    pub(super) data: Option<Bytes>,
    pub(super) deliver: Option<Delivery>,
}

impl ThenDeliver {
    fn fire(&mut self) {
        if let Some(d) = self.deliver.take() {
            std::thread::spawn(move || {
                if let Err(e) = deliver(&d) {
                    eprintln!("github stand-in: delivering to {} failed: {e}", d.url);
                }
            });
        }
    }
}

impl hyper::body::Body for ThenDeliver {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match this.data.take() {
            Some(d) if !d.is_empty() => Poll::Ready(Some(Ok(hyper::body::Frame::data(d)))),
            _ => {
                this.fire();
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for ThenDeliver {
    fn drop(&mut self) {
        self.fire();
    }
}

/// A GUID-like delivery id, fresh each call.
pub(super) fn delivery_id() -> String {
    use sha2::Digest;
    static N: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{:?}-{}-{}",
        SystemTime::now(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let h = hex::encode(sha2::Sha256::digest(seed.as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// POSTs one signed `deployment` event over HTTP/1.1, with a fresh
/// delivery id; the status is not judged (GitHub only logs it).
pub(super) fn deliver(d: &Delivery) -> Result<(), String> {
    post_event(&d.url, &d.secret, ("deployment", &delivery_id()), &d.body).map(|_| ())
}

/// POSTs one `event` with delivery id `guid` and `body` to `url` (an
/// `http://ip:port/...` URL) over HTTP/1.1, signed with `secret` in
/// `X-Hub-Signature-256` as GitHub signs, and returns the HTTP status
/// answered (0 when the answer is not HTTP).
pub(super) fn post_event(
    url: &str,
    secret: &str,
    (event, guid): (&str, &str),
    body: &[u8],
) -> Result<u16, String> {
    let rest = url.strip_prefix("http://").ok_or("not an http:// URL")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|e| format!("{authority} is not ip:port: {e}"))?;
    let mut s = TcpStream::connect_timeout(&addr, DELIVERY_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(DELIVERY_TIMEOUT)).ok();
    s.set_write_timeout(Some(DELIVERY_TIMEOUT)).ok();
    let signature = format!("sha256={}", crate::support::hmac_sha256_hex(secret, body));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         User-Agent: GitHub-Hookshot/standin\r\nX-GitHub-Event: {event}\r\n\
         X-GitHub-Delivery: {guid}\r\nX-Hub-Signature-256: {signature}\r\n\r\n",
        body.len(),
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let status = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok(status)
}
