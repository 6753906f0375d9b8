//! The dashboard in a real browser: headless Chromium driven through
//! chromedriver (WebDriver, the `fantoccini` client) against a real server,
//! a real journal and real signed deliveries (GitHub's documented push).
//! What tests/ui.rs checks over HTTP, here as a user goes through it: the
//! sign-in form by its labels, the hook URL revealed and copied, deliveries
//! and their decisions, "Redeploy now" and the deploy page's live log (its
//! own EventSource script), each page at a phone's width, a form sent
//! without its CSRF token, sign-out.
//!
//! The browser is [`crate::support::browser`]'s. Each page is screenshot into the world's directory; with
//! `REDEPLOY_SCREENSHOTS=DIR` the stacks, stack, deploy and delivery pages are also
//! saved there as `stacks.png`, `stack.png`, `deploy.png` and `delivery.png` (1280x800), for
//! the docs.

use std::path::PathBuf;
use std::time::Instant;

use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::Locator;
use serde_json::json;

use crate::support::browser::{
    browser, size_viewport, step, Chromedriver, Grant, Pages, WAIT, WINDOW,
};
use crate::support::deliveries::{borrowed, fixture_headers};
use crate::support::{fixture, http, ServerProcess, Stack, World};
use crate::ui::{ui_table, FIXTURE_SECRET, PASSWORD};

/// The fixture `github/goscm-push`'s delivery id (`X-GitHub-Delivery`).
const FIXTURE_DELIVERY: &str = "f2467dea-70d6-11e8-8955-3c83993e0aef";

/// Tab presses the keyboard check makes at most.
const MAX_TABS: usize = 40;

/// A phone's screen, in CSS pixels (an iPhone 12 to 15's, held upright).
const PHONE: (u32, u32) = (390, 844);

/// What in the current page sticks out sideways at the window's width,
/// leaving what is inside a box that scrolls on its own (`.scroll`, the
/// log): the page's width, the window's, and each element that reaches
/// past either edge.
const WIDE_ELEMENTS: &str = "const width = window.innerWidth;\n\
    const wide = [...document.querySelectorAll('body *')].filter((e) => {\n\
      if (e.closest('.scroll, .log')) return false;\n\
      const r = e.getBoundingClientRect();\n\
      return r.width > 0 && (r.left < -0.5 || r.right > width + 0.5);\n\
    }).map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + ': ' + e.textContent.slice(0, 60));\n\
    return [document.documentElement.scrollWidth, width, wide];";

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
    size_viewport(&client, WINDOW).await;

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

    // 7. At a phone's width, no page scrolls sideways and each control is
    // on the screen (a wide table scrolls within its own box).
    pages.step("7: each page at a phone's width");
    size_viewport(&client, PHONE).await;
    let phone_pages = [
        ("stacks", "/ui/".to_owned(), "Sign out"),
        ("stack", "/ui/stacks/hello".to_owned(), "Redeploy now"),
        // The pushed commit's deploy: its facts hold the whole commit id.
        (
            "deploy",
            format!("/ui/deploys/{}", deploys[0].id),
            "Sign out",
        ),
        ("delivery", delivery_path.clone(), "Decisions"),
    ];
    for (name, path, control) in phone_pages {
        client.goto(&format!("{base}{path}")).await.unwrap();
        pages.expect(&path, &[control]).await;
        let measured = client.execute(WIDE_ELEMENTS, vec![]).await.unwrap();
        assert_eq!(measured[1], json!(PHONE.0), "{name}: the window's width");
        assert!(
            measured[0].as_u64().unwrap() <= u64::from(PHONE.0)
                && measured[2].as_array().unwrap().is_empty(),
            "{name} at {PHONE:?} is wider than the screen: {measured}"
        );
        pages.screenshot(&format!("phone-{name}"), false).await;
    }
    size_viewport(&client, WINDOW).await;

    // By keyboard alone: from the top of the stack page, Tab reaches
    // "Redeploy now" through the controls before it.
    pages.step("7: the stack page by keyboard");
    client.goto(&stack).await.unwrap();
    let mut passed = Vec::new();
    let reached = loop {
        let tab = KeyActions::new("keyboard".into())
            .then(KeyAction::Down {
                value: Key::Tab.into(),
            })
            .then(KeyAction::Up {
                value: Key::Tab.into(),
            });
        client.perform_actions(tab).await.unwrap();
        let focused = client
            .execute(
                "const e = document.activeElement;\n\
                 return e.tagName.toLowerCase() + ': ' + (e.value || e.textContent).trim();",
                vec![],
            )
            .await
            .unwrap();
        let focused = focused.as_str().unwrap().to_owned();
        if focused == "button: Redeploy now" || passed.len() == MAX_TABS {
            break focused;
        }
        passed.push(focused);
    };
    assert_eq!(reached, "button: Redeploy now", "Tab passed {passed:?}");
    assert!(
        passed.iter().any(|f| f == "button: Show hook URL"),
        "{passed:?}"
    );

    // 8. A state-changing request without the CSRF token, from the signed-in
    // browser: "Redeploy now" with its token taken out, and a fetch() with
    // the session's cookie and no token. Both are refused; nothing deploys.
    pages.step("8: requests without the CSRF token");
    client.goto(&stack).await.unwrap();
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

    // 9. Signing out: the sign-in page, and the dashboard leads there again.
    pages.step("9: signing out");
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
