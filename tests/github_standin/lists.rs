//! The stand-in's lists: deployments and deployment statuses (newest
//! first, as GitHub lists them), and the pagination every list shares
//! (`per_page`, `page`, and a `Link` header with `prev`, `next`, `last`
//! and `first`).

use super::*;

/// One page of `items` for a list at `path` asked with `query`: the page
/// the query names, at most `per_page` (GitHub's default when absent,
/// capped at [`State::page_cap`]), with a `Link` header when there are
/// other pages. The links keep the query's other parameters (filters).
pub(super) fn page(st: &State, path: &str, query: &str, items: Vec<Value>) -> Answer {
    let mut per_page = DEFAULT_PER_PAGE.min(st.page_cap);
    let mut page = 1usize;
    let mut filters = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match (&*k, v.parse::<usize>()) {
            ("per_page", Ok(n)) => per_page = n.clamp(1, st.page_cap),
            ("page", Ok(n)) => page = n.max(1),
            ("per_page" | "page", Err(_)) => {}
            _ => {
                filters.append_pair(&k, &v);
            }
        }
    }
    let filters = filters.finish();
    let last = items.len().div_ceil(per_page).max(1);
    let shown: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let link_to = |p: usize, rel: &str| {
        let sep = if filters.is_empty() { "" } else { "&" };
        format!(
            "<{}{path}?{filters}{sep}per_page={per_page}&page={p}>; rel=\"{rel}\"",
            st.base
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link_to(page - 1, "prev"));
    }
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    if page > 1 {
        links.push(link_to(1, "first"));
    }
    let mut answer = Answer::json(200, Value::Array(shown));
    if !links.is_empty() {
        answer.headers.push(("link".into(), links.join(", ")));
    }
    answer
}

/// `GET /repos/{owner}/{repo}/deployments`: the repository's deployments,
/// newest first, filtered by the `sha`, `ref`, `task` and `environment`
/// the query gives (each an exact match, as GitHub filters).
pub(super) fn list_deployments(st: &mut State, repo: &str, query: &str) -> Answer {
    let filters: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| matches!(&**k, "sha" | "ref" | "task" | "environment"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut found: Vec<&Deployment> = st
        .deployments
        .values()
        .filter(|d| d.repo.eq_ignore_ascii_case(repo))
        .filter(|d| {
            filters
                .iter()
                .all(|(k, v)| d.object[k.as_str()].as_str() == Some(v.as_str()))
        })
        .collect();
    found.sort_by_key(|d| std::cmp::Reverse(d.object["id"].as_u64()));
    let items = found.into_iter().map(|d| d.object.clone()).collect();
    page(st, &format!("/repos/{repo}/deployments"), query, items)
}

/// `GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses`: the
/// statuses the stand-in created for deployment `id`, newest first.
pub(super) fn list_statuses(st: &mut State, repo: &str, id: u64, query: &str) -> Answer {
    let items: Vec<Value> = st
        .status_objects
        .get(&id)
        .map(|s| s.iter().rev().cloned().collect())
        .unwrap_or_default();
    page(
        st,
        &format!("/repos/{repo}/deployments/{id}/statuses"),
        query,
        items,
    )
}
