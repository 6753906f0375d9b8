//! A loopback HTTP endpoint standing in for a chat service or a user's
//! webhook receiver: it records every request (method, path, headers with
//! lowercase names, body) and answers from a script, then `200 ok`
//! forever. It can go down (its listener closed: connections refused) and
//! come back on the same port. An answer may be held back a while (a
//! slow channel): the request is recorded when it arrives, answered later.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::wait_for;

/// How long a connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request body the receiver reads.
const MAX_BODY: usize = 1 << 20;

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// A `Retry-After` header's value, if any.
    pub retry_after: Option<String>,
    /// How long after the request's arrival it is answered.
    pub delay: Duration,
}

impl Answer {
    /// An answer of `status` and no `Retry-After`.
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    /// This answer with `Retry-After: value`.
    pub fn retry_after(self, value: &str) -> Answer {
        Answer {
            retry_after: Some(value.to_string()),
            ..self
        }
    }

    /// This answer, given `delay` after the request arrived.
    pub fn after(self, delay: Duration) -> Answer {
        Answer { delay, ..self }
    }
}

impl From<u16> for Answer {
    fn from(status: u16) -> Answer {
        Answer::status(status)
    }
}

/// A request the receiver took.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target: path and query.
    pub path: String,
    /// Header names lowercase, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When its body was read.
    pub at: Instant,
    /// The status it was answered.
    pub answered: u16,
}

impl Request {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Answer>,
    requests: Vec<Request>,
}

/// The thread accepting connections, and how to stop it.
struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// A loopback HTTP receiver (see the module doc).
pub struct Receiver {
    port: u16,
    state: Arc<Mutex<State>>,
    acceptor: Option<Acceptor>,
}

impl Receiver {
    /// A receiver answering `statuses` in order, then 200 forever.
    pub fn start(statuses: Vec<u16>) -> Receiver {
        Receiver::answering(statuses.into_iter().map(Answer::from).collect())
    }

    /// A receiver answering `answers` in order, then 200 forever.
    pub fn answering(answers: Vec<Answer>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            script: answers.into(),
            requests: Vec::new(),
        }));
        let acceptor = Some(accept(listener, Arc::clone(&state)));
        Receiver {
            port,
            state,
            acceptor,
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Closes the listener: connections to its port are refused until
    /// [`Receiver::up`]. Connections already accepted are still answered.
    pub fn down(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        acceptor.stop.store(true, Ordering::SeqCst);
        // Wakes the blocked accept, which sees the flag and drops the
        // listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        acceptor.thread.join().unwrap();
    }

    /// Listens on its port again.
    pub fn up(&mut self) {
        if self.acceptor.is_some() {
            return;
        }
        let addr = ("127.0.0.1", self.port);
        // std sets SO_REUSEADDR: the old connections' TIME_WAIT does not
        // hold the port; a moment's wait covers the listener's release.
        let listener = wait_for(10, &format!("port {} to bind again", self.port), || {
            TcpListener::bind(addr).ok()
        });
        self.acceptor = Some(accept(listener, Arc::clone(&self.state)));
    }

    /// Every request taken so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many requests it took.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// The requests once there are at least `n`, or panics after `secs`.
    pub fn wait_for(&self, n: usize, secs: u64) -> Vec<Request> {
        wait_for(secs, &format!("{n} requests on port {}", self.port), || {
            let requests = self.requests();
            (requests.len() >= n).then_some(requests)
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// Accepts connections on `listener` in a thread, each served in its own
/// thread, until the returned flag is set (and one more connection wakes
/// the thread).
fn accept(listener: TcpListener, state: Arc<Mutex<State>>) -> Acceptor {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            let state = Arc::clone(&state);
            std::thread::spawn(move || serve(stream, &state));
        }
    });
    Acceptor { stop, thread }
}

/// Reads one request, records it, answers from the script and closes.
fn serve(stream: TcpStream, state: &Mutex<State>) {
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut reader = BufReader::new(stream);
    let Some((method, path, headers)) = read_head(&mut reader) else {
        return;
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(&mut reader)
    } else {
        let len: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
        assert!(len <= MAX_BODY, "a {len}-byte request body");
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok().map(|()| body)
    };
    let Some(body) = body else { return };
    let answer = {
        let mut state = state.lock().unwrap();
        let answer = state
            .script
            .pop_front()
            .unwrap_or_else(|| Answer::status(200));
        state.requests.push(Request {
            method,
            path,
            headers,
            body,
            at: Instant::now(),
            answered: answer.status,
        });
        answer
    };
    // Recorded at its arrival; answered when its time comes.
    std::thread::sleep(answer.delay);
    let text = if answer.status < 300 { "ok" } else { "no" };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        reason(answer.status),
        text.len()
    );
    if let Some(after) = &answer.retry_after {
        out.push_str(&format!("Retry-After: {after}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(text);
    let stream = reader.get_mut();
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.flush();
}

/// A request's method, target and headers (names lowercase).
type Head = (String, String, Vec<(String, String)>);

/// The request line and the headers; `None` when the connection closed
/// first (the wake-up connection of [`Receiver::down`]).
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Head> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut words = line.split_whitespace();
    let method = words.next()?.to_string();
    let path = words.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Some((method, path, headers));
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
}

/// A chunked body, de-chunked.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        assert!(
            body.len() + size <= MAX_BODY,
            "a request body over {MAX_BODY} bytes"
        );
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        body.extend_from_slice(&chunk[..size]);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
