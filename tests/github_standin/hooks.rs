//! The stand-in's repository webhooks: listed, created, updated.

use super::*;

pub(super) fn render_hook(base: &str, repo: &str, h: &Hook) -> Value {
    let mut config = h.config.clone();
    if h.secret.is_some() {
        config.insert("secret".into(), json!(MASKED_SECRET));
    }
    let url = format!("{base}/repos/{repo}/hooks/{}", h.id);
    json!({
        "type": "Repository",
        "id": h.id,
        "name": "web",
        "active": h.active,
        "events": h.events,
        "config": config,
        "updated_at": h.updated_at,
        "created_at": h.created_at,
        "url": url,
        "test_url": format!("{url}/test"),
        "ping_url": format!("{url}/pings"),
        "deliveries_url": format!("{url}/deliveries"),
        "last_response": {"code": null, "status": "unused", "message": null},
    })
}

pub(super) fn list_hooks(st: &mut State, repo: &str, query: &str) -> Answer {
    let items: Vec<Value> = st
        .hooks
        .iter()
        .filter(|h| {
            h.repo
                .as_deref()
                .is_none_or(|r| r.eq_ignore_ascii_case(repo))
        })
        .map(|h| render_hook(&st.base, repo, h))
        .collect();
    super::lists::page(st, &format!("/repos/{repo}/hooks"), query, items)
}

/// `config` as GitHub stores it: defaults filled in, the secret apart.
pub(super) fn hook_config(config: &Value) -> (serde_json::Map<String, Value>, Option<String>) {
    let mut c = config.as_object().cloned().unwrap_or_default();
    let secret = c
        .remove("secret")
        .and_then(|s| s.as_str().map(str::to_string))
        .filter(|s| !s.is_empty());
    c.entry("content_type").or_insert(json!("form"));
    let ssl = match c.get("insecure_ssl") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "0".to_string(),
    };
    c.insert("insecure_ssl".into(), json!(ssl));
    (c, secret)
}

pub(super) fn create_hook(st: &mut State, repo: &str, req: &Value) -> Answer {
    let docs = "https://docs.github.com/rest/repos/webhooks#create-a-repository-webhook";
    if req["name"].as_str().is_some_and(|n| n != "web") {
        return error(422, "Validation Failed: name must be \"web\"", docs);
    }
    let (config, secret) = hook_config(&req["config"]);
    let Some(url) = config
        .get("url")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return error(422, "Validation Failed: url is missing", docs);
    };
    if st.hooks.iter().any(|h| {
        h.repo
            .as_deref()
            .is_none_or(|r| r.eq_ignore_ascii_case(repo))
            && h.config.get("url").and_then(Value::as_str) == Some(url.as_str())
    }) {
        return error(
            422,
            "Validation Failed: Hook already exists on this repository",
            docs,
        );
    }
    let id = st.next_hook_id;
    st.next_hook_id += 1;
    let now = now_rfc3339();
    let hook = Hook {
        id,
        repo: Some(repo.to_string()),
        active: req["active"].as_bool().unwrap_or(true),
        events: req["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_else(|| vec!["push".to_string()]),
        config,
        secret,
        created_at: now.clone(),
        updated_at: now,
    };
    let body = render_hook(&st.base, repo, &hook);
    st.hooks.push(hook);
    Answer {
        status: 201,
        headers: vec![("location".into(), body["url"].as_str().unwrap().into())],
        body,
        deliver: None,
    }
}

pub(super) fn update_hook(st: &mut State, repo: &str, id: &str, req: &Value) -> Answer {
    let docs = "https://docs.github.com/rest/repos/webhooks#update-a-repository-webhook";
    let id: Option<u64> = id.parse().ok();
    let base = st.base.clone();
    let Some(h) = st.hooks.iter_mut().find(|h| {
        Some(h.id) == id
            && h.repo
                .as_deref()
                .is_none_or(|r| r.eq_ignore_ascii_case(repo))
    }) else {
        return error(404, "Not Found", docs);
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    if req.get("events").is_some() {
        h.events = strings(&req["events"]);
    }
    for e in strings(&req["add_events"]) {
        if !h.events.contains(&e) {
            h.events.push(e);
        }
    }
    let remove = strings(&req["remove_events"]);
    h.events.retain(|e| !remove.contains(e));
    if let Some(a) = req["active"].as_bool() {
        h.active = a;
    }
    if req.get("config").is_some_and(Value::is_object) {
        // The whole config is replaced: a secret not sent again is removed.
        let (config, secret) = hook_config(&req["config"]);
        if !config.contains_key("url") {
            return error(422, "Validation Failed: url is missing", docs);
        }
        h.config = config;
        h.secret = secret;
    }
    h.updated_at = now_rfc3339();
    let h = h.clone();
    Answer::json(200, render_hook(&base, repo, &h))
}
