//! The dashboard's delivery page (what arrived, redacted; "check again")
//! and "Cancel", over HTTP against a real server and journal, with GitHub's
//! documented push (`github/goscm-push`: a push to `refs/heads/master` of
//! Codertocat/Hello-World, signed with the secret `topsecret`).

use crate::support::deliveries::{borrowed, fixture_headers, post_fixture, post_fixture_with};
use crate::support::{fixture, hook, wait_for, Stack, World};
use crate::ui::{csrf, dashboard, ui_table, Browser, FIXTURE_SECRET, PASSWORD};

/// The journal id of the newest delivery to `stack`.
fn newest_delivery(world: &World, stack: &str) -> i64 {
    world.query_journal(&format!(
        "SELECT MAX(id) FROM deliveries WHERE stack = '{stack}'"
    ))
}

/// Why the push was skipped for `other` (which follows develop), as the
/// page writes it (quotes escaped).
const SKIPPED: &str = "push to &#34;master&#34; does not match branch &#34;develop&#34;";

/// The text between `<h3 id="checked">` and the end of its table.
fn checked_part(page: &str) -> &str {
    let start = page
        .find("id=\"checked\"")
        .unwrap_or_else(|| panic!("no check result in {page}"));
    let end = start + page[start..].find("</table>").unwrap();
    &page[start..end]
}

#[test]
fn the_delivery_page_shows_the_request_redacted_and_checks_it_again() {
    let (world, server) = dashboard("ui-delivery", "keep_delivery_bodies = 65536", "");
    let body = fixture("github/goscm-push.json");
    let headers = fixture_headers("github/goscm-push.headers");
    let signature = headers
        .iter()
        .find(|(k, _)| k == "X-Hub-Signature-256")
        .map(|(_, v)| v.clone())
        .unwrap();

    // Deployed for `hello` (master), through a proxy that names the public
    // path, hook token and all; skipped for `other` (develop).
    let forwarded_uri = format!("/deploy/{}", crate::support::token(1));
    let mut through_proxy = borrowed(&headers);
    through_proxy.push(("X-Forwarded-Uri", &forwarded_uri));
    server
        .post(&hook(1), &through_proxy, &body)
        .assert_status(202);
    let deployed = newest_delivery(&world, "hello");
    post_fixture(&server, &hook(2), "github/goscm-push").assert_status(200);
    let skipped = newest_delivery(&world, "other");
    // A body changed after signing: refused (and its body not kept).
    post_fixture_with(&server, &hook(2), "github/goscm-push", |b| b.push(b'\n')).assert_status(401);
    let forged = newest_delivery(&world, "other");
    world.settle(30);

    let mut viewer = Browser::new(&server);
    viewer.sign_in("victor", PASSWORD);
    // The stack page links each delivery to its page.
    let stack_page = viewer.get("/ui/stacks/other").text();
    assert!(
        stack_page.contains(&format!("href=\"/ui/deliveries/{skipped}\"")),
        "{stack_page}"
    );

    let page = viewer.get(&format!("/ui/deliveries/{deployed}"));
    assert_eq!(page.status, 200);
    let page = page.text();
    for fact in [
        "Delivery #",
        "<dd>github</dd>",
        "<dd>push</dd>",
        "f2467dea-70d6-11e8-8955-3c83993e0aef",
        "<dd>202</dd>",
        &format!("{} bytes", body.len()),
        "deploy: queued (#",
        "<code>x-github-event</code></th><td><code>push</code>",
    ] {
        assert!(page.contains(fact), "{fact:?} not in {page}");
    }
    // Both signature headers are there, their values are not.
    assert!(page.contains("<code>x-hub-signature-256</code></th><td><code>(redacted)</code>"));
    assert!(page.contains("<code>x-hub-signature</code></th><td><code>(redacted)</code>"));
    assert!(!page.contains(&signature), "a signature shown: {page}");
    assert!(page.contains("<code>x-forwarded-uri</code></th><td><code>(redacted)</code>"));
    assert!(
        !page.contains(&crate::support::token(1)),
        "the hook token shown: {page}"
    );

    // The skipped one says why; checked again with the configuration now
    // it is still skipped, for the same reason.
    let page = viewer.get(&format!("/ui/deliveries/{skipped}")).text();
    assert!(page.contains(SKIPPED), "{page}");
    let token = csrf(&page);
    let check = format!("/ui/deliveries/{skipped}/check");
    assert_eq!(viewer.post(&check, &[]).status, 403, "no CSRF token");
    let again = viewer.post(&check, &[("csrf", &token)]);
    assert_eq!(again.status, 200);
    let again = again.text();
    assert!(checked_part(&again).contains(SKIPPED), "{again}");

    // The forged one was refused for its signature; the body of a refused
    // delivery is never kept (anyone with the URL can send them), so it
    // cannot be checked again.
    let page = viewer.get(&format!("/ui/deliveries/{forged}")).text();
    assert!(page.contains("<dd>401</dd>"), "{page}");
    assert!(page.contains("bad-signature"), "{page}");
    assert!(
        page.contains("the body of a refused delivery is not kept"),
        "{page}"
    );
    let again = viewer.post(
        &format!("/ui/deliveries/{forged}/check"),
        &[("csrf", &token)],
    );
    assert_eq!(again.status, 409, "{}", again.text());

    // With `other` following master now, the skipped push would deploy;
    // the dry run says so and deploys nothing.
    let config = &world.config;
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text.replace("\"develop\"", "\"master\"")).unwrap();
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) },
        0
    );
    let before = world.deploys().len();
    wait_for(10, "the reload to apply", || {
        let again = viewer.post(&check, &[("csrf", &token)]).text();
        checked_part(&again)
            .contains("<td>deploy</td>")
            .then_some(())
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(world.deploys().len(), before, "a dry run deployed");

    assert_eq!(viewer.get("/ui/deliveries/999999").status, 404);
    assert_eq!(viewer.get("/ui/deliveries/x").status, 404);
    server.terminate();
}

#[test]
fn without_kept_bodies_a_delivery_cannot_be_checked_again() {
    let (world, server) = dashboard("ui-delivery-unkept", "", "");
    post_fixture(&server, &hook(2), "github/goscm-push").assert_status(200);
    let id = newest_delivery(&world, "other");
    let mut viewer = Browser::new(&server);
    viewer.sign_in("victor", PASSWORD);
    let page = viewer.get(&format!("/ui/deliveries/{id}")).text();
    assert!(
        page.contains("not kept (keep_delivery_bodies keeps none)"),
        "{page}"
    );
    assert!(!page.contains("Check again</button>"), "{page}");
    let token = csrf(&page);
    let refused = viewer.post(&format!("/ui/deliveries/{id}/check"), &[("csrf", &token)]);
    assert_eq!(refused.status, 409, "{}", refused.text());
    server.terminate();
}

#[test]
fn an_operator_cancels_a_running_deploy_and_a_queued_one() {
    let hello = "Codertocat/Hello-World";
    // The command records its pid, then sleeps far longer than the test
    // takes to cancel it (and ends by itself should the test fail first).
    let stacks = crate::support::stacks::toml(&[Stack::new("slow")
        .follows(hello, "master")
        .token(1)
        .secret(FIXTURE_SECRET)
        .line("command = [\"sh\", \"-c\", \"echo $$ > \\\"$REDEPLOY_EVENT_FILE.pid\\\"; echo started; exec sleep 60\"]")]);
    let world = World::new("ui-cancel", "", &(stacks + &ui_table("")));
    let server = world.start(&[]);
    let running = post_fixture(&server, &hook(1), "github/goscm-push")
        .assert_status(202)
        .decision()["deploy_id"]
        .as_i64()
        .unwrap();
    wait_for(20, "the deploy to start", || {
        (world.deploys()[0].state == redeploy_host::journal::DeployState::Started).then_some(())
    });
    // A manual trigger queues behind it.
    let mut operator = Browser::new(&server);
    operator.sign_in("alice", PASSWORD);
    let page = operator.get("/ui/stacks/slow").text();
    let token = csrf(&page);
    let now = operator.post("/ui/stacks/slow/deploy", &[("csrf", &token)]);
    assert_eq!(now.status, 303, "{}", now.text());
    let queued = world.deploys().iter().map(|d| d.id).max().unwrap();
    assert_ne!(queued, running);

    // A viewer may not cancel.
    let mut viewer = Browser::new(&server);
    viewer.sign_in("victor", PASSWORD);
    let viewer_token = csrf(&viewer.get("/ui/stacks/slow").text());
    let path = |id: i64| format!("/ui/deploys/{id}/cancel");
    assert_eq!(
        viewer
            .post(&path(queued), &[("csrf", &viewer_token)])
            .status,
        403
    );
    // Nor anyone without the form's token.
    assert_eq!(operator.post(&path(queued), &[]).status, 403);

    let page = operator.get("/ui/stacks/slow").text();
    assert!(page.contains("Cancel deploy #"), "{page}");
    let cancelled = operator.post(&path(queued), &[("csrf", &token)]);
    assert_eq!(cancelled.status, 303, "{}", cancelled.text());
    let state = |id: i64| {
        world
            .deploys()
            .into_iter()
            .find(|d| d.id == id)
            .map(|d| (d.state, d.detail.unwrap_or_default()))
            .unwrap()
    };
    use redeploy_host::journal::DeployState::{Cancelled, Started};
    assert_eq!(state(queued).0, Cancelled, "a queued deploy at once");
    assert_eq!(state(queued).1, "cancelled by alice from the dashboard");
    assert_eq!(state(running).0, Started);

    let page = operator.get(&format!("/ui/deploys/{running}")).text();
    assert!(page.contains("Cancel this deploy"), "{page}");
    let cancelled = operator.post(&path(running), &[("csrf", &token)]);
    assert_eq!(cancelled.status, 303, "{}", cancelled.text());
    assert_eq!(
        cancelled.header("location"),
        Some(format!("/ui/deploys/{running}").as_str())
    );
    wait_for(20, "the running deploy to be cancelled", || {
        (state(running).0 == Cancelled).then_some(())
    });
    assert_eq!(state(running).1, "cancelled by alice from the dashboard");
    // Its process is gone.
    let log_dir = world.dir.join("state/logs/slow");
    let pid: i32 = std::fs::read_to_string(log_dir.join(format!("{running}.event.json.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(10, "the deploy's process to end", || {
        // SAFETY: kill(2) with signal 0 only checks that the pid exists.
        (unsafe { libc::kill(pid, 0) } != 0).then_some(())
    });
    // An ended deploy cannot be cancelled again.
    let again = operator.post(&path(running), &[("csrf", &token)]);
    assert_eq!(again.status, 409, "{}", again.text());
    assert!(!operator
        .get(&format!("/ui/deploys/{running}"))
        .text()
        .contains("Cancel this deploy"));
    server.terminate();
}

#[test]
fn the_dashboard_on_its_own_address_is_not_on_the_hook_port_and_takes_users_from_a_file() {
    let port = crate::support::free_port();
    let ui_addr = format!("127.0.0.1:{port}");
    // fiona comes from the users file, beside alice and victor in the table.
    let world = World::new(
        "ui-listen",
        "",
        &(crate::ui::stacks()
            + &ui_table(&format!(
                "listen = \"{ui_addr}\"\nusers_file = \"ui-users.toml\""
            ))),
    );
    std::fs::write(
        world.dir.join("ui-users.toml"),
        format!(
            "[[users]]\nname = \"fiona\"\nrole = \"operator\"\npassword_hash = \"{}\"\n",
            crate::ui::password_hash()
        ),
    )
    .unwrap();
    let server = world.start(&[]);

    // The hook port has no dashboard: /ui/ answers as any unknown path,
    // and the hook URLs work as ever.
    let on_hooks = Browser::new(&server).get("/ui/login");
    assert_eq!(on_hooks.status, 404, "{}", on_hooks.text());
    post_fixture(&server, &hook(1), "github/goscm-push").assert_status(202);

    let mut fiona = Browser::at(&ui_addr);
    let signed_in = fiona.sign_in("fiona", PASSWORD);
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    let page = fiona.get("/ui/stacks/hello").text();
    assert!(page.contains("Redeploy now"), "an operator: {page}");
    // Hook URLs shown there name the hook port, not the dashboard's.
    let shown = fiona
        .post("/ui/stacks/hello/hook-url", &[("csrf", &csrf(&page))])
        .text();
    assert!(
        shown.contains(&format!("http://{}/hooks/", server.addr)),
        "{shown}"
    );
    assert!(
        !shown.contains(&format!("http://{ui_addr}/hooks/")),
        "{shown}"
    );
    // The table's users sign in there too; the hook port has no sign-in.
    let mut alice = Browser::at(&ui_addr);
    assert_eq!(alice.sign_in("alice", PASSWORD).status, 303);
    // Only the dashboard is there.
    assert_eq!(
        crate::support::http::request(&ui_addr, "GET", "/healthz", &[], b"").status,
        404
    );
    server.terminate();
}

#[test]
fn a_users_file_that_cannot_be_read_or_parsed_is_refused_at_load_saying_which() {
    let world = World::new(
        "ui-users-file",
        "",
        &(crate::ui::stacks() + "\n[ui]\nusers_file = \"missing-users.toml\"\n"),
    );
    let out = world.redeploy(&["config", "check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ui: users_file") && err.contains("missing-users.toml"),
        "{err}"
    );
    std::fs::write(
        world.dir.join("missing-users.toml"),
        "[[users]]\nname = \"x\"\npassword = \"plain\"\n",
    )
    .unwrap();
    let out = world.redeploy(&["config", "check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `password`"), "{err}");
    assert!(
        !err.contains("plain"),
        "the file's values are not echoed: {err}"
    );
}

#[test]
fn a_reload_that_gives_the_dashboard_its_own_address_takes_it_off_the_hook_port() {
    let (world, server) = dashboard("ui-reload-listen", "", "");
    assert_eq!(Browser::new(&server).get("/ui/login").status, 200);
    let text = std::fs::read_to_string(&world.config).unwrap();
    let port = crate::support::free_port();
    let moved = text.replacen(
        "\n[ui]\n",
        &format!("\n[ui]\nlisten = \"127.0.0.1:{port}\"\n"),
        1,
    );
    assert_ne!(moved, text);
    std::fs::write(&world.config, moved).unwrap();
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) },
        0
    );
    // Until a restart opens its socket, the dashboard is nowhere: never on
    // the hook port it was asked off.
    wait_for(10, "the dashboard to leave the hook port", || {
        (Browser::new(&server).get("/ui/login").status == 404).then_some(())
    });
    // The reload warns once it has applied the file, just after the swap
    // the wait above saw.
    wait_for(
        10,
        "the log to name the setting that needs a restart",
        || world.server_log().contains("ui.listen").then_some(()),
    );
    post_fixture(&server, &hook(1), "github/goscm-push").assert_status(202);
    server.terminate();
}
