//! The load tests' client: keep-alive HTTP/1.1 connections that outlive
//! a killed server, and the answers they collect.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Job;

/// A keep-alive HTTP/1.1 connection that reconnects when the server closed
/// it (or was killed), waiting up to `patience` for the server to listen.
pub(super) struct Conn {
    addr: String,
    stream: Option<BufReader<TcpStream>>,
    patience: Duration,
}

impl Conn {
    pub(super) fn new(addr: &str, patience: Duration) -> Conn {
        Conn {
            addr: addr.to_string(),
            stream: None,
            patience,
        }
    }

    pub(super) fn connect(&mut self) -> Option<()> {
        let deadline = Instant::now() + self.patience;
        loop {
            match TcpStream::connect(&self.addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    self.stream = Some(BufReader::new(s));
                    return Some(());
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => return None,
            }
        }
    }

    /// Sends one request. `None` when the outcome is unknown: the
    /// connection broke after the request went out.
    pub(super) fn send(
        &mut self,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Option<(u16, Vec<u8>)> {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        for attempt in 0..2 {
            let reused = self.stream.is_some();
            if !reused {
                self.connect()?;
            }
            let stream = self.stream.as_mut().unwrap();
            if stream.get_mut().write_all(&request).is_err() {
                // Nothing was processed: a request the server cannot have
                // read completely is not acted on.
                self.stream = None;
                if attempt == 0 {
                    continue;
                }
                return None;
            }
            match read_response(stream) {
                Ok(Some(r)) => {
                    if r.2 {
                        self.stream = None;
                    }
                    return Some((r.0, r.1));
                }
                // The server closed an idle keep-alive connection before
                // reading anything of this request: send it again.
                Ok(None) if reused && attempt == 0 => {
                    self.stream = None;
                    continue;
                }
                _ => {
                    self.stream = None;
                    return None;
                }
            }
        }
        None
    }
}

/// Status, body, and whether the server closes the connection. `Ok(None)`
/// when the connection was closed before any byte of a response.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<(u16, Vec<u8>, bool)>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut len = 0usize;
    let mut close = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let h = h.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if h == "connection: close" {
            close = true;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some((status, body, close)))
}

/// What a delivery got.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) job: Job,
    /// `None`: unknown (the server died while it was in flight).
    pub(super) status: Option<u16>,
    pub(super) body: Vec<u8>,
}

impl Answer {
    pub(super) fn decision(&self) -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .map(|j| j["decisions"][0].clone())
            .unwrap_or_default()
    }

    /// The deploy this delivery created, if it created one.
    pub(super) fn created(&self) -> Option<i64> {
        let d = self.decision();
        matches!(d["state"].as_str(), Some("queued" | "cancelled"))
            .then(|| d["deploy_id"].as_i64())
            .flatten()
    }
}

/// Sends `jobs` over the [`super::CONNECTIONS`] connections and waits for every answer.
pub(super) fn send_all(conns: &[Mutex<Conn>], jobs: Vec<Job>) -> Vec<Answer> {
    let queue = Mutex::new(jobs);
    let answers = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for conn in conns {
            let (queue, answers) = (&queue, &answers);
            scope.spawn(move || {
                let mut conn = conn.lock().unwrap();
                loop {
                    let Some(job) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let (path, headers, body) = job.request();
                    let (status, body) = match conn.send(&path, &headers, &body) {
                        Some((s, b)) => (Some(s), b),
                        None => (None, Vec::new()),
                    };
                    answers.lock().unwrap().push(Answer { job, status, body });
                }
            });
        }
    });
    answers.into_inner().unwrap()
}
