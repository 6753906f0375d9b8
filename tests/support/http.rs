//! A minimal HTTP/1.1 client for loopback tests (one request per
//! connection), and [`serve_once`], a one-request endpoint standing in for
//! what a deploy action or a registry callback calls.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long the client waits for an answer (and [`serve_once`] for a request).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A body up to this size is written before the answer is read; a larger
/// one from another thread (the server may answer 413 before reading it).
const INLINE_BODY_BYTES: usize = 64 * 1024;

/// A response: status, headers (lowercase names), body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text (lossy), for failure messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Response {
        assert_eq!(self.status, status, "{}", self.text());
        self
    }

    /// Asserts a refusal: the status and the JSON `error` kind.
    #[track_caller]
    pub fn assert_error(&self, status: u16, error: &str) {
        self.assert_status(status);
        assert_eq!(self.json()["error"], error, "{}", self.text());
    }

    /// The answer's first decision (`decisions[0]`).
    pub fn decision(&self) -> serde_json::Value {
        self.json()["decisions"][0].clone()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request to `addr` and reads the whole response.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // The server may answer (413) before reading a large body: write it
    // from another thread while this one reads the answer.
    let mut raw = Vec::new();
    if body.len() <= INLINE_BODY_BYTES {
        let _ = s.write_all(body);
        let _ = s.read_to_end(&mut raw);
    } else {
        let mut w = s.try_clone().unwrap();
        let body = body.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(&body);
        });
        let _ = s.read_to_end(&mut raw);
        let _ = writer.join();
    }
    parse(&raw)
}

/// Sends `raw` bytes as they are (for requests the normal client cannot
/// express: duplicate framing headers, bad request lines) and reads until
/// the server closes. `None` if the server closed without an answer.
pub fn raw(addr: &str, raw: &[u8]) -> Option<Response> {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    // Write from another thread: the server may answer (431, 413) and
    // close before it has read everything.
    let mut w = s.try_clone().unwrap();
    let raw = raw.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&raw);
    });
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let _ = writer.join();
    (!out.is_empty()).then(|| parse(&out))
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// A request [`serve_once`] received: its head lines (each with its CRLF,
/// the request line first) and its body.
pub struct Received {
    pub head: Vec<String>,
    pub body: Vec<u8>,
}

/// Listens on a loopback port for one request, answers it with `answer`
/// (a whole HTTP response) and yields what it received. Returns the port
/// and the thread to join.
pub fn serve_once(answer: String) -> (u16, std::thread::JoinHandle<Received>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = Vec::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            head.push(line);
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        reader.get_mut().write_all(answer.as_bytes()).unwrap();
        Received { head, body }
    });
    (port, thread)
}
