//! Headless Chromium driven through chromedriver (WebDriver, the
//! `fantoccini` client), for the dashboard's browser tests: the driver
//! process and its browser's clean-up, a session, and what a page shows
//! (its text, labelled fields, buttons, tables' rows, screenshots).
//!
//! Debian's `chromium` and `chromium-driver` (/usr/bin/chromium,
//! /usr/bin/chromedriver) must be installed: `.ci/run` installs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::free_port;

/// The browser and chromedriver, from Debian's `chromium` and
/// `chromium-driver`.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The window (and so the screenshots): the docs' size.
pub const WINDOW: (u32, u32) = (1280, 800);

/// How long any one wait of this module may take (a page to show
/// something, chromedriver to start, a deploy to end).
pub const WAIT: Duration = Duration::from_secs(60);

/// How often a wait looks again.
pub const POLL: Duration = Duration::from_millis(100);

/// chromedriver on a free loopback port, in a process group of its own;
/// on drop, it and every process of its browser are killed.
pub struct Chromedriver {
    child: Child,
    /// Where it listens: `http://127.0.0.1:PORT`.
    pub url: String,
    /// The driver's and the browser's home directory (see [`Self::start`]).
    home: PathBuf,
}

impl Chromedriver {
    /// Starts chromedriver, logging into `log`, with `home` as its and the
    /// browser's home directory, and waits until it answers.
    pub fn start(log: &Path, home: &Path) -> Chromedriver {
        use std::os::unix::process::CommandExt as _;
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: the browser tests need Debian's chromium and \
                 chromium-driver, which .ci/run installs \
                 (apt-get install chromium chromium-driver)"
            );
        }
        let port = free_port();
        let out = std::fs::File::create(log).unwrap();
        // The browser's files outside its profile (crash reports, dconf)
        // stay in the world's directory too.
        std::fs::create_dir_all(home).unwrap();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"));
        let addr = format!("127.0.0.1:{port}");
        let driver = Chromedriver {
            child,
            url: format!("http://{addr}"),
            home: home.to_owned(),
        };
        let deadline = Instant::now() + WAIT;
        loop {
            // Listening is enough: the session's request waits for the
            // rest. (Not `http::request`: chromedriver keeps a connection
            // open after answering, whatever `Connection: close` says.)
            if std::net::TcpStream::connect(&addr).is_ok() {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {addr} within {WAIT:?}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(POLL);
        }
    }

    /// The driver's processes but itself: those under it (children, their
    /// children...), and those whose command line names its home directory
    /// (the browser's crash handlers, which leave the process tree and
    /// group), from /proc.
    pub fn browser_processes(&self) -> Vec<i32> {
        let home = self.home.to_string_lossy().into_owned();
        let mut parents: Vec<(i32, i32)> = Vec::new();
        let mut found = vec![self.child.id() as i32];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: the command may hold spaces and ')'.
            let Some(after) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
                continue;
            };
            if let Some(Ok(ppid)) = after.split_whitespace().nth(1).map(str::parse) {
                parents.push((pid, ppid));
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&home) {
                found.push(pid);
            }
        }
        let mut at = 0;
        while at < found.len() {
            let parent = found[at];
            for &(pid, ppid) in &parents {
                if ppid == parent && !found.contains(&pid) {
                    found.push(pid);
                }
            }
            at += 1;
        }
        found.remove(0);
        found
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // Found before any is killed: an orphan is no longer under the
        // driver.
        let browser = self.browser_processes();
        // SAFETY: plain kill(2) of the driver's own process group (it was
        // started as its leader) and of its browser's processes.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
            for &pid in &browser {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
        // Gone before the world's directory (their profile) is removed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while browser
            .iter()
            .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        {
            if Instant::now() >= deadline {
                eprintln!("the browser's processes outlived SIGKILL: {browser:?}");
                break;
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A session of headless Chromium: a fresh profile in `profile`, the
/// machine's closed network left alone (no background connections), the
/// docs' window size.
pub async fn browser(driver: &Chromedriver, profile: &Path) -> Client {
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        // Containers often give /dev/shm 64 MiB: a tab that runs out crashes.
        "--disable-dev-shm-usage".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        format!("--user-data-dir={}", profile.display()),
        format!("--window-size={},{}", WINDOW.0, WINDOW.1),
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({ "binary": CHROMIUM, "args": args }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let mut builder = ClientBuilder::new(connector);
    builder.capabilities(capabilities);
    let connecting = builder.connect(&driver.url);
    let client = tokio::time::timeout(WAIT, connecting)
        .await
        .unwrap_or_else(|_| panic!("no browser session from chromedriver within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("no browser session from chromedriver: {e}"));
    // A page load or a script that hangs fails its command, not the test
    // run's patience.
    let timeouts = fantoccini::wd::TimeoutConfiguration::new(
        Some(Duration::from_secs(30)),
        Some(Duration::from_secs(30)),
        Some(Duration::ZERO),
    );
    client.update_timeouts(timeouts).await.unwrap();
    client
}

/// Makes the page's area (not the window's) `size` (width, height): the
/// window's size counts its frame, which a screenshot leaves out.
pub async fn size_viewport(client: &Client, size: (u32, u32)) {
    let inner = "return [window.innerWidth, window.innerHeight];";
    let (width, height) = client.get_window_size().await.unwrap();
    let shown = client.execute(inner, vec![]).await.unwrap();
    let frame = |outer: u64, at: usize| outer - shown[at].as_u64().unwrap();
    let (width, height) = (
        size.0 + frame(width, 0) as u32,
        size.1 + frame(height, 1) as u32,
    );
    client.set_window_size(width, height).await.unwrap();
    let shown = client.execute(inner, vec![]).await.unwrap();
    assert_eq!(shown, json!([size.0, size.1]), "the page's area");
}

/// WebDriver's "Set Permissions" (chromedriver has it; fantoccini has no
/// call for it): `name` granted to the current page's origin.
#[derive(Debug)]
pub struct Grant(pub &'static str);

impl fantoccini::wd::WebDriverCompatibleCommand for Grant {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/permissions", session_id.unwrap()))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        let body = json!({ "descriptor": { "name": self.0 }, "state": "granted" });
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

/// What the browser shows and where: the current page's path and text.
pub struct Pages<'a> {
    /// The browser session.
    pub client: &'a Client,
    /// The world's directory: a screenshot of each page.
    pub dir: PathBuf,
    /// `REDEPLOY_SCREENSHOTS`: the docs' screenshots.
    pub docs: Option<PathBuf>,
    /// Screenshots taken so far (numbering the next).
    pub shots: usize,
    /// When the test began: each step is logged with its time.
    pub began: Instant,
}

impl Pages<'_> {
    /// Logs the start of a step (shown when the test fails, or with
    /// `--nocapture`).
    pub fn step(&self, what: &str) {
        step(self.began, what);
    }

    /// The current page's path (and query).
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The current page's text, as shown.
    pub async fn text(&self) -> String {
        let body = self.client.find(Locator::Css("body")).await.unwrap();
        body.text().await.unwrap()
    }

    /// Asserts that the current page is at `path` and shows each of
    /// `needles`.
    pub async fn expect(&self, path: &str, needles: &[&str]) -> String {
        let (at, text) = (self.path().await, self.text().await);
        assert_eq!(at, path, "the browser is elsewhere, showing:\n{text}");
        crate::support::assert_contains_all(&text, needles);
        text
    }

    /// Saves a screenshot of the current page as `NN-name.png` in the
    /// world's directory, and as `name.png` in the docs' directory when
    /// `docs` and `REDEPLOY_SCREENSHOTS` is set.
    pub async fn screenshot(&mut self, name: &str, docs: bool) {
        let png = self.client.screenshot().await.unwrap();
        assert_eq!(&png[1..4], b"PNG", "a screenshot is a PNG");
        self.shots += 1;
        let file = self.dir.join(format!("{:02}-{name}.png", self.shots));
        std::fs::write(&file, &png).unwrap();
        if let (true, Some(dir)) = (docs, &self.docs) {
            // Width and height: the IHDR chunk's first two fields.
            let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
            assert_eq!((size(16), size(20)), WINDOW, "the docs' screenshots' size");
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        }
    }

    /// The form field whose `<label>` reads `label`.
    pub async fn labelled(&self, label: &str) -> Element {
        let xpath = format!("//label[normalize-space()={}]", xpath_string(label));
        let label_element = match self.client.find(Locator::XPath(&xpath)).await {
            Ok(found) => found,
            Err(e) => panic!("no label {label:?} ({e}) in:\n{}", self.text().await),
        };
        let id = label_element
            .attr("for")
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the label {label:?} names no field (for=)"));
        self.client
            .find(Locator::Id(&id))
            .await
            .unwrap_or_else(|e| panic!("no field #{id} for the label {label:?}: {e}"))
    }

    /// The button that reads `text`.
    pub async fn button(&self, text: &str) -> Element {
        let xpath = format!("//button[normalize-space()={}]", xpath_string(text));
        match self.client.find(Locator::XPath(&xpath)).await {
            Ok(button) => button,
            Err(e) => panic!("no button {text:?} ({e}) in:\n{}", self.text().await),
        }
    }

    /// Clicks the button that reads `text`, and waits for the page it
    /// leads to (`from` names the page left, for a failure's message).
    pub async fn click_to_next_page(&self, text: &str, from: &str) {
        let button = self.button(text).await;
        // The page that goes away: its body is stale once the next loads.
        let old = self.client.find(Locator::Css("body")).await.unwrap();
        button.click().await.unwrap();
        let what = format!("the page after clicking {text:?} on {from}");
        self.wait(&what, async || match old.tag_name().await {
            Err(e) if e.is_stale_element_reference() => Some(()),
            _ => None,
        })
        .await;
    }

    /// The row of the section `section`'s table (by its `aria-labelledby`)
    /// that holds `code` in a `<code>`: each cell, as shown, by its
    /// column's heading.
    pub async fn row(&self, section: &str, code: &str) -> Row {
        let table = format!(
            "//section[@aria-labelledby={}]//table",
            xpath_string(section)
        );
        let xpath = format!(
            "{table}//tr[td/code[normalize-space()={}]]",
            xpath_string(code)
        );
        let row = match self.client.find(Locator::XPath(&xpath)).await {
            Ok(row) => row,
            Err(e) => panic!(
                "no row with {code:?} in the {section} table ({e}):\n{}",
                self.text().await
            ),
        };
        let mut cells = Vec::new();
        let headings = format!("{table}/thead/tr/th");
        let headings = self.client.find_all(Locator::XPath(&headings)).await;
        let row_cells = row.find_all(Locator::XPath("./th | ./td")).await;
        let (headings, row_cells) = (headings.unwrap(), row_cells.unwrap());
        assert_eq!(
            headings.len(),
            row_cells.len(),
            "the {section} table's columns"
        );
        for (heading, cell) in headings.iter().zip(row_cells) {
            cells.push((heading.text().await.unwrap(), cell.text().await.unwrap()));
        }
        Row(cells)
    }

    /// The text of the element `#id`.
    pub async fn text_of(&self, id: &str) -> String {
        let element = self.client.find(Locator::Id(id)).await;
        let element = element.unwrap_or_else(|e| panic!("no #{id}: {e}"));
        element.text().await.unwrap()
    }

    /// Polls `f` until it gives `Some`, or panics after [`WAIT`] naming
    /// `what` and showing the page.
    pub async fn wait<T>(&self, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(value) = f().await {
                return value;
            }
            if Instant::now() >= deadline {
                let shown = match self.client.find(Locator::Css("body")).await {
                    Ok(body) => body.text().await.unwrap_or_default(),
                    Err(e) => format!("(no page: {e})"),
                };
                panic!("timed out after {WAIT:?} waiting for {what}; the page shows:\n{shown}");
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Logs the start of a step, `began` being the test's start.
pub fn step(began: Instant, what: &str) {
    eprintln!("[ui_browser {:5.1}s] {what}", began.elapsed().as_secs_f64());
}

/// A table's row: (column heading, cell), as shown.
#[derive(Debug)]
pub struct Row(Vec<(String, String)>);

impl Row {
    /// The cell under the heading `column`.
    pub fn cell(&self, column: &str) -> &str {
        match self.0.iter().find(|(heading, _)| heading == column) {
            Some((_, cell)) => cell,
            None => panic!("no column {column:?} in {self:?}"),
        }
    }

    /// Asserts the cells under each of `columns`.
    #[track_caller]
    pub fn assert(&self, columns: &[(&str, &str)]) {
        for (column, expected) in columns {
            assert_eq!(self.cell(column), *expected, "{column} in {self:?}");
        }
    }
}

/// `s` as an XPath string literal (no test string holds both quotes).
pub fn xpath_string(s: &str) -> String {
    if s.contains('\'') {
        format!("\"{s}\"")
    } else {
        format!("'{s}'")
    }
}
