//! The dashboard in a real browser: headless Chromium driven through
//! chromedriver (WebDriver, the `fantoccini` client) against a real server,
//! a real journal and real signed deliveries (GitHub's documented push).
//! What tests/ui.rs checks over HTTP, here as a user goes through it: the
//! sign-in form by its labels, the hook URL revealed and copied, deliveries
//! and their decisions, "Redeploy now" and the deploy page's live log (its
//! own EventSource script), a form sent without its CSRF token, sign-out.
//!
//! Debian's `chromium` and `chromium-driver` (/usr/bin/chromium,
//! /usr/bin/chromedriver) must be installed: `.ci/run` installs them. Each
//! page is screenshot into the world's directory; with
//! `REDEPLOY_SCREENSHOTS=DIR` the stacks, stack, deploy and delivery pages are also
//! saved there as `stacks.png`, `stack.png`, `deploy.png` and `delivery.png` (1280x800), for
//! the docs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::deliveries::{borrowed, fixture_headers};
use crate::support::{fixture, free_port, http, ServerProcess, Stack, World};
use crate::ui::{ui_table, FIXTURE_SECRET, PASSWORD};

/// The fixture `github/goscm-push`'s delivery id (`X-GitHub-Delivery`).
const FIXTURE_DELIVERY: &str = "f2467dea-70d6-11e8-8955-3c83993e0aef";

/// The browser and chromedriver, from Debian's `chromium` and
/// `chromium-driver`.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The window (and so the screenshots): the docs' size.
const WINDOW: (u32, u32) = (1280, 800);

/// How long any one wait of this module may take (a page to show
/// something, chromedriver to start, a deploy to end).
const WAIT: Duration = Duration::from_secs(60);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// Stack `hello` follows the fixture push's repository and branch; stack
/// `other` the same repository on `develop`. A deploy of `hello` prints a
/// line, then waits (a minute at most) for the test to create
/// `release-<deploy id>` in the world's directory, then prints two more:
/// the deploy page is seen while the deploy runs, whatever the machine's
/// speed.
fn stacks() -> String {
    let hello = "Codertocat/Hello-World";
    let gated = "command = [\"sh\", \"-c\", '\
        echo \"deploy $REDEPLOY_DEPLOY_ID: waiting for the test\"; \
        i=0; while [ ! -e \"@DIR@/release-$REDEPLOY_DEPLOY_ID\" ] && [ $i -lt 600 ]; \
        do sleep 0.1; i=$((i+1)); done; \
        [ -e \"@DIR@/release-$REDEPLOY_DEPLOY_ID\" ] || exit 1; \
        echo released; echo done']";
    crate::support::stacks::toml(&[
        Stack::new("hello")
            .follows(hello, "master")
            .token(1)
            .secret(FIXTURE_SECRET)
            .line(gated),
        Stack::repo("other", hello, "develop", 2).secret(FIXTURE_SECRET),
    ])
}

/// Lets deploy `id` of stack `hello` go on (see [`stacks`]).
fn release(world: &World, id: i64) {
    std::fs::write(world.dir.join(&format!("release-{id}")), "").unwrap();
}

/// chromedriver on a free loopback port, in a process group of its own;
/// on drop, it and every process of its browser are killed.
struct Chromedriver {
    child: Child,
    url: String,
    /// The driver's and the browser's home directory (see [`Self::start`]).
    home: PathBuf,
}

impl Chromedriver {
    /// Starts chromedriver, logging into `log`, with `home` as its and the
    /// browser's home directory, and waits until it answers.
    fn start(log: &Path, home: &Path) -> Chromedriver {
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
    fn browser_processes(&self) -> Vec<i32> {
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
async fn browser(driver: &Chromedriver, profile: &Path) -> Client {
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

/// Makes the page's area (not the window's) [`WINDOW`]: the window's size
/// counts its frame, which a screenshot leaves out.
async fn size_viewport(client: &Client) {
    let inner = "return [window.innerWidth, window.innerHeight];";
    let (width, height) = client.get_window_size().await.unwrap();
    let shown = client.execute(inner, vec![]).await.unwrap();
    let frame = |outer: u64, at: usize| outer - shown[at].as_u64().unwrap();
    let (width, height) = (
        WINDOW.0 + frame(width, 0) as u32,
        WINDOW.1 + frame(height, 1) as u32,
    );
    client.set_window_size(width, height).await.unwrap();
    let shown = client.execute(inner, vec![]).await.unwrap();
    assert_eq!(shown, json!([WINDOW.0, WINDOW.1]), "the page's area");
}

/// WebDriver's "Set Permissions" (chromedriver has it; fantoccini has no
/// call for it): `name` granted to the current page's origin.
#[derive(Debug)]
struct Grant(&'static str);

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
struct Pages<'a> {
    client: &'a Client,
    /// The world's directory: a screenshot of each page.
    dir: PathBuf,
    /// `REDEPLOY_SCREENSHOTS`: the docs' screenshots.
    docs: Option<PathBuf>,
    shots: usize,
    /// When the test began: each step is logged with its time.
    began: Instant,
}

impl Pages<'_> {
    /// Logs the start of a step (shown when the test fails, or with
    /// `--nocapture`).
    fn step(&self, what: &str) {
        step(self.began, what);
    }

    /// The current page's path (and query).
    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The current page's text, as shown.
    async fn text(&self) -> String {
        let body = self.client.find(Locator::Css("body")).await.unwrap();
        body.text().await.unwrap()
    }

    /// Asserts that the current page is at `path` and shows each of
    /// `needles`.
    async fn expect(&self, path: &str, needles: &[&str]) -> String {
        let (at, text) = (self.path().await, self.text().await);
        assert_eq!(at, path, "the browser is elsewhere, showing:\n{text}");
        crate::support::assert_contains_all(&text, needles);
        text
    }

    /// Saves a screenshot of the current page as `NN-name.png` in the
    /// world's directory, and as `name.png` in the docs' directory when
    /// `docs` and `REDEPLOY_SCREENSHOTS` is set.
    async fn screenshot(&mut self, name: &str, docs: bool) {
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
    async fn labelled(&self, label: &str) -> Element {
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
    async fn button(&self, text: &str) -> Element {
        let xpath = format!("//button[normalize-space()={}]", xpath_string(text));
        match self.client.find(Locator::XPath(&xpath)).await {
            Ok(button) => button,
            Err(e) => panic!("no button {text:?} ({e}) in:\n{}", self.text().await),
        }
    }

    /// Clicks the button that reads `text`, and waits for the page it
    /// leads to (`from` names the page left, for a failure's message).
    async fn click_to_next_page(&self, text: &str, from: &str) {
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
    async fn row(&self, section: &str, code: &str) -> Row {
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
    async fn text_of(&self, id: &str) -> String {
        let element = self.client.find(Locator::Id(id)).await;
        let element = element.unwrap_or_else(|e| panic!("no #{id}: {e}"));
        element.text().await.unwrap()
    }

    /// Polls `f` until it gives `Some`, or panics after [`WAIT`] naming
    /// `what` and showing the page.
    async fn wait<T>(&self, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
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
fn step(began: Instant, what: &str) {
    eprintln!("[ui_browser {:5.1}s] {what}", began.elapsed().as_secs_f64());
}

/// A table's row: (column heading, cell), as shown.
#[derive(Debug)]
struct Row(Vec<(String, String)>);

impl Row {
    /// The cell under the heading `column`.
    fn cell(&self, column: &str) -> &str {
        match self.0.iter().find(|(heading, _)| heading == column) {
            Some((_, cell)) => cell,
            None => panic!("no column {column:?} in {self:?}"),
        }
    }

    /// Asserts the cells under each of `columns`.
    #[track_caller]
    fn assert(&self, columns: &[(&str, &str)]) {
        for (column, expected) in columns {
            assert_eq!(self.cell(column), *expected, "{column} in {self:?}");
        }
    }
}

/// `s` as an XPath string literal (no test string holds both quotes).
fn xpath_string(s: &str) -> String {
    if s.contains('\'') {
        format!("\"{s}\"")
    } else {
        format!("'{s}'")
    }
}

/// POSTs the fixture `<name>.json` with its recorded headers to `url`, a
/// hook URL as the dashboard showed it (on this server, plain HTTP).
fn post_fixture_to_url(server: &ServerProcess, url: &str, name: &str) -> http::Response {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url:?}: {e}"));
    assert_eq!(parsed.scheme(), "http", "{url}");
    let addr = format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap());
    assert_eq!(addr, server.addr, "the hook URL names this server: {url}");
    assert!(parsed.path().starts_with("/hooks/"), "{url}");
    assert_eq!(parsed.query(), None, "{url}");
    let body = fixture(&format!("{name}.json"));
    let headers = fixture_headers(&format!("{name}.headers"));
    http::request(&addr, "POST", parsed.path(), &borrowed(&headers), &body)
}

// The blocking helpers (the server, the journal, plain HTTP) run on the
// test's one runtime thread: the browser session's task only works while
// a WebDriver command is awaited, and none is while they run.
#[tokio::test(flavor = "current_thread")]
async fn a_user_in_a_real_browser_signs_in_deploys_and_signs_out() {
    let began = Instant::now();
    let world = World::new("ui-browser", "", &(stacks() + &ui_table("")));
    step(began, "starting the server");
    let server = world.start(&[]);
    step(began, "starting chromedriver and the browser");
    // Dropped before the world (its directory holds the browser's profile).
    let driver = Chromedriver::start(
        &world.dir.join("chromedriver.log"),
        &world.dir.join("browser-home"),
    );
    let client = browser(&driver, &world.dir.join("chromium-profile")).await;
    let mut pages = Pages {
        client: &client,
        dir: world.dir.0.clone(),
        docs: std::env::var_os("REDEPLOY_SCREENSHOTS").map(PathBuf::from),
        shots: 0,
        began,
    };
    pages.step("the browser is ready");
    let base = server.url();
    size_viewport(&client).await;

    // 1. Not signed in: the dashboard leads to the sign-in page.
    pages.step("1: the sign-in page");
    client.goto(&format!("{base}/ui/")).await.unwrap();
    pages
        .expect("/ui/login", &["Sign in", "User name", "Password"])
        .await;
    assert_eq!(client.title().await.unwrap(), "Sign in · redeploy");
    pages.screenshot("sign-in", false).await;

    // 2. Signing in by the form's labelled fields: the stacks page.
    pages.step("2: signing in");
    let user = pages.labelled("User name").await;
    user.send_keys("alice").await.unwrap();
    let password = pages.labelled("Password").await;
    assert_eq!(
        password.attr("type").await.unwrap().as_deref(),
        Some("password")
    );
    password.send_keys(PASSWORD).await.unwrap();
    pages
        .click_to_next_page("Sign in", "the sign-in page")
        .await;
    pages
        .expect(
            "/ui/",
            &[
                "Stacks",
                "alice (operator)",
                "Sign out",
                "hello",
                "Codertocat/Hello-World, branch master",
                "other",
                "Codertocat/Hello-World, branch develop",
                "never deployed",
            ],
        )
        .await;
    pages.screenshot("stacks", false).await;

    // 3. Stack hello: the hook URL, revealed on an operator's demand, and
    // copied by its button.
    pages.step("3: the hook URL");
    let link = client.find(Locator::LinkText("hello")).await.unwrap();
    link.click().await.unwrap();
    let stack = format!("{base}/ui/stacks/hello");
    pages
        .wait("the stack page", async || {
            (pages.path().await == "/ui/stacks/hello").then_some(())
        })
        .await;
    let text = pages
        .expect(
            "/ui/stacks/hello",
            &[
                "Follows Codertocat/Hello-World, branch master",
                "Redeployment hook",
                "Redeploy now",
                "No deploys yet.",
                "No deliveries yet.",
            ],
        )
        .await;
    assert!(!text.contains("/hooks/"), "hidden until asked for:\n{text}");
    pages.screenshot("stack-hello", false).await;
    pages
        .click_to_next_page("Show hook URL", "the stack page")
        .await;
    let field = pages
        .labelled("Hook URL (a secret: whoever has it can trigger deploys)")
        .await;
    let hook_url = field.prop("value").await.unwrap().unwrap();
    assert!(
        hook_url.starts_with(&format!("{base}/hooks/")),
        "{hook_url}"
    );
    let copy = client
        .find(Locator::Css("button[data-copy=\"hook-url\"]"))
        .await
        .unwrap();
    assert_eq!(copy.text().await.unwrap(), "Copy");
    copy.click().await.unwrap();
    let copied = pages
        .wait("the copy button to say what it did", async || {
            let said = copy.text().await.unwrap();
            (said != "Copy").then_some(said)
        })
        .await;
    assert_eq!(copied, "Copied", "the clipboard refused the hook URL");
    // What the button wrote is the URL shown (reading the clipboard back
    // needs a permission that writing does not).
    client.issue_cmd(Grant("clipboard-read")).await.unwrap();
    let clipboard = client
        .execute("return navigator.clipboard.readText();", vec![])
        .await
        .unwrap();
    assert_eq!(clipboard, json!(hook_url), "the clipboard");
    pages.screenshot("stack-hello-hook-url", false).await;

    // 4. A signed push to that URL (the fixture's own, as GitHub sent it):
    // on the reloaded stack page, its delivery and the decision to deploy.
    pages.step("4: a push that deploys");
    let pushed = post_fixture_to_url(&server, &hook_url, "github/goscm-push");
    let first = pushed.assert_status(202).decision()["deploy_id"]
        .as_i64()
        .unwrap();
    client.goto(&stack).await.unwrap();
    let row = pages.row("deliveries", FIXTURE_DELIVERY).await;
    row.assert(&[
        ("From", "github"),
        ("Event", "push"),
        ("Answer", "202"),
        ("Decision", &format!("deploy: queued (#{first})")),
    ]);
    pages
        .expect(
            "/ui/stacks/hello",
            &[&format!("#{first}"), "refs/heads/master"],
        )
        .await;
    pages.screenshot("stack-hello-delivery", false).await;
    release(&world, first);
    crate::support::world::assert_all_succeeded(&world.settle(WAIT.as_secs()));

    // 5. The same push to stack other's URL (it follows develop): skipped,
    // and why, on other's page.
    pages.step("5: a push that is skipped");
    client
        .goto(&format!("{base}/ui/stacks/other"))
        .await
        .unwrap();
    pages
        .expect(
            "/ui/stacks/other",
            &["Follows Codertocat/Hello-World, branch develop"],
        )
        .await;
    pages
        .click_to_next_page("Show hook URL", "stack other's page")
        .await;
    let other_url = pages
        .labelled("Hook URL (a secret: whoever has it can trigger deploys)")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(other_url, hook_url, "each stack has its own hook URL");
    let skipped = post_fixture_to_url(&server, &other_url, "github/goscm-push");
    skipped.assert_status(200);
    let reason = "push to \"master\" does not match branch \"develop\"";
    assert_eq!(skipped.decision()["reason"], reason, "{}", skipped.text());
    client
        .goto(&format!("{base}/ui/stacks/other"))
        .await
        .unwrap();
    // The skipped delivery's row, then its own page: the reason, the
    // headers with the signatures redacted.
    let row = pages.row("deliveries", FIXTURE_DELIVERY).await;
    row.assert(&[
        ("From", "github"),
        ("Event", "push"),
        ("Answer", "200"),
        ("Decision", "skip"),
        ("Why", reason),
    ]);
    pages.expect("/ui/stacks/other", &["No deploys yet."]).await;
    pages.screenshot("stack-other-skipped", false).await;
    let skipped_id: i64 =
        world.query_journal("SELECT MAX(id) FROM deliveries WHERE stack = 'other'");
    let link = format!("//a[@aria-label='Delivery #{skipped_id}']");
    client
        .find(Locator::XPath(&link))
        .await
        .unwrap_or_else(|e| panic!("no link to delivery #{skipped_id}: {e}"))
        .click()
        .await
        .unwrap();
    let delivery_path = format!("/ui/deliveries/{skipped_id}");
    pages
        .wait("the delivery page", async || {
            (pages.path().await == delivery_path).then_some(())
        })
        .await;
    let text = pages
        .expect(
            &delivery_path,
            &[
                &format!("Delivery #{skipped_id} to other"),
                FIXTURE_DELIVERY,
                reason,
                "x-hub-signature-256",
                "(redacted)",
            ],
        )
        .await;
    let signature = fixture_headers("github/goscm-push.headers")
        .into_iter()
        .find(|(k, _)| k == "X-Hub-Signature-256")
        .unwrap()
        .1;
    assert!(!text.contains(&signature), "a signature shown: {text}");
    pages.screenshot("delivery", true).await;

    // 6. "Redeploy now": on to the new deploy's page, which follows the
    // log as it is written, by the page's own EventSource, until the
    // deploy ends.
    pages.step("6: redeploy now and the live log");
    client.goto(&stack).await.unwrap();
    pages
        .click_to_next_page("Redeploy now", "the stack page")
        .await;
    let deploys = world.deploys();
    assert_eq!(deploys.len(), 2, "{deploys:?}");
    let now = deploys[1].id;
    assert_eq!(deploys[1].queued.provider, "manual");
    let deploy_path = format!("/ui/deploys/{now}");
    pages
        .wait("the deploy page", async || {
            (pages.path().await == deploy_path).then_some(())
        })
        .await;
    pages
        .expect(&deploy_path, &[&format!("Deploy #{now} of hello"), "Log"])
        .await;
    let live = pages.text_of("live").await;
    assert!(live.contains("This deploy is not over"), "{live}");
    // This document stays loaded to the end: a reload would lose the mark.
    client
        .execute("window.redeployTestMark = 'same page';", vec![])
        .await
        .unwrap();
    pages
        .wait("the deploy's first line in the log", async || {
            let log = pages.text_of("log").await;
            log.contains(&format!("deploy {now}: waiting for the test"))
                .then_some(())
        })
        .await;
    // The deploy waits for the test: started, not over.
    pages
        .wait("the deploy's state to be \"started\"", async || {
            (pages.text_of("state").await == "started").then_some(())
        })
        .await;
    assert_eq!(pages.text_of("live").await, live, "not over yet");
    // An operator may cancel it while it runs (tests/ui_operate.rs does).
    assert!(
        client.find(Locator::Id("cancel-form")).await.is_ok(),
        "no cancel button on a running deploy"
    );
    release(&world, now);
    pages
        .wait("the live log to say the deploy ended", async || {
            (pages.text_of("live").await != live).then_some(())
        })
        .await;
    assert_eq!(pages.text_of("live").await, "The deploy ended: succeeded.");
    assert_eq!(pages.text_of("state").await, "succeeded");
    // Nothing left to cancel.
    assert!(
        client.find(Locator::Id("cancel-form")).await.is_err(),
        "the cancel button outlived the deploy"
    );
    let log = pages.text_of("log").await;
    let end = format!("released\ndone\n-- redeploy: deploy #{now} succeeded (exit code 0)");
    assert!(log.contains(&end), "{log:?}");
    let mark = client
        .execute("return window.redeployTestMark;", vec![])
        .await
        .unwrap();
    assert_eq!(mark, json!("same page"), "the page was reloaded");
    pages.screenshot("deploy", true).await;
    crate::support::world::assert_all_succeeded(&world.settle(WAIT.as_secs()));

    // The docs' stacks and stack pages, with a deploy and deliveries.
    pages.step("the stacks and stack pages after the deploys");
    client.goto(&format!("{base}/ui/")).await.unwrap();
    pages
        .expect("/ui/", &["succeeded", &format!("#{now}")])
        .await;
    pages.screenshot("stacks", true).await;
    client.goto(&stack).await.unwrap();
    pages
        .expect("/ui/stacks/hello", &["Redeploy this commit", "manual"])
        .await;
    pages.screenshot("stack", true).await;

    // 7. A state-changing request without the CSRF token, from the signed-in
    // browser: "Redeploy now" with its token taken out, and a fetch() with
    // the session's cookie and no token. Both are refused; nothing deploys.
    pages.step("7: requests without the CSRF token");
    let removed = client
        .execute(
            "const form = document.querySelector('form[action=\"/ui/stacks/hello/deploy\"]');\n\
             const token = form.querySelector('input[name=\"csrf\"]');\n\
             token.remove();\n\
             return form.querySelectorAll('input[name=\"csrf\"]').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(removed, json!(0));
    pages
        .click_to_next_page("Redeploy now", "the stack page without its token")
        .await;
    let refusal = "This form's security token is missing or wrong";
    pages.expect("/ui/stacks/hello/deploy", &[refusal]).await;
    let status = client
        .execute(
            "return performance.getEntriesByType('navigation')[0].responseStatus;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403), "the refusal's status");
    pages.screenshot("refused-without-token", false).await;
    let fetched = client
        .execute(
            "return fetch('/ui/stacks/hello/deploy', {\n\
               method: 'POST', credentials: 'same-origin',\n\
               headers: {'Content-Type': 'application/x-www-form-urlencoded'},\n\
               body: 'profile=',\n\
             }).then((r) => r.text().then((text) => [r.status, text]));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fetched[0], json!(403), "{fetched}");
    let body = fetched[1].as_str().unwrap();
    assert!(
        body.contains("security token is missing or wrong"),
        "{body}"
    );
    assert_eq!(world.deploys().len(), 2, "nothing more deployed");

    // 8. Signing out: the sign-in page, and the dashboard leads there again.
    pages.step("8: signing out");
    client.goto(&format!("{base}/ui/")).await.unwrap();
    pages
        .click_to_next_page("Sign out", "the stacks page")
        .await;
    pages.expect("/ui/login", &["Sign in"]).await;
    pages.screenshot("signed-out", false).await;
    for path in ["/ui/", "/ui/stacks/hello"] {
        client.goto(&format!("{base}{path}")).await.unwrap();
        let text = pages.expect("/ui/login", &["Sign in"]).await;
        assert!(!text.contains("alice"), "{path}: {text}");
    }

    client.close().await.unwrap();
    drop(driver);
    server.terminate();
}
