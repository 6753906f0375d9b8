#!/usr/bin/env python3
"""Scaffolds one golden case per fixture payload in tests/fixtures.

Run once per new fixture: `python3 tests/golden/scaffold.py`. It writes
`tests/golden/cases/<provider>-<name>/case.json` (never overwriting one that
exists) with stacks chosen from what the payload itself says (repository and
ref, read here independently of the Rust parsers): one stack that follows the
pushed branch (or tag, or image), one that follows another branch. The
expected outcome is then produced with REDEPLOY_BLESS=1 and read by a person
against the payload before it is committed.
"""
import json, os, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
CASES = ROOT / "tests" / "golden" / "cases"


def rows():
    prov = None
    for line in open(FIX / "SOURCES.md"):
        m = re.match(r"^### (\S+)", line)
        if m:
            prov = m.group(1)
            continue
        if line.startswith("| `") and prov:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[1] == "payload":
                yield prov, cells[0].strip("`"), cells[2]


def repo_and_ref(prov, d):
    """(repository full name, full ref or None, image or None) read from the payload."""
    g = lambda *ks: _get(d, *ks)
    if prov in ("github", "gitea", "forgejo", "gogs", "gitee"):
        repo = g("repository", "full_name") or g("repository", "path_with_namespace")
        if not repo and g("repository", "owner", "login") and g("repository", "name"):
            repo = g("repository", "owner", "login") + "/" + g("repository", "name")
        ref = d.get("ref") if isinstance(d.get("ref"), str) else None
        if ref and not ref.startswith("refs/") and d.get("ref_type") in ("branch", "tag"):
            ref = ("refs/heads/" if d["ref_type"] == "branch" else "refs/tags/") + ref
        dref = g("deployment", "ref")
        if dref and not re.fullmatch(r"[0-9a-f]{40}", dref):
            ref = "refs/heads/" + dref
        pkg = d.get("package") or d.get("registry_package")
        image = None
        if pkg:
            owner = g("package", "owner", "login") or g("registry_package", "owner", "login") or ""
            image = "ghcr.io/%s/%s" % (owner.lower(), (pkg.get("name") or "").lower())
            url = _get(pkg, "package_version", "package_url")
            if url:
                # The image's own name (the package's display name may differ).
                image = url.split("@")[0].rsplit(":", 1)[0] if url.count(":") else url
        return repo, ref, image
    if prov == "gitlab":
        repo = g("project", "path_with_namespace") or g("object_attributes", "target", "path_with_namespace")
        return repo, d.get("ref"), None
    if prov == "bitbucket-cloud":
        ch = (g("push", "changes") or [{}])[0]
        n = ch.get("new") or ch.get("old") or {}
        ref = None
        if n:
            ref = ("refs/tags/" if n.get("type") == "tag" else "refs/heads/") + n.get("name", "")
        return g("repository", "full_name"), ref, None
    if prov == "bitbucket-server":
        repo = None
        if g("repository", "project", "key"):
            repo = g("repository", "project", "key") + "/" + g("repository", "slug")
        ch = (d.get("changes") or [{}])[0]
        ref = _get(ch, "ref", "id") or ch.get("refId")
        return repo, ref, None
    if prov == "bitbucket-legacy-post":
        repo = (g("repository", "absolute_url") or "").strip("/")
        commits = d.get("commits") or []
        ref = "refs/heads/" + commits[-1]["branch"] if commits else None
        return repo, ref, None
    if prov == "azure-devops":
        r = g("resource", "repository") or {}
        repo = (_get(r, "project", "name") or "") + "/" + (r.get("name") or "")
        ups = g("resource", "refUpdates") or [{}]
        return repo, ups[0].get("name"), None
    if prov == "harness-code":
        return g("repo", "path"), g("ref", "name"), None
    if prov == "dockerhub":
        return None, None, g("repository", "repo_name")
    if prov == "quay":
        return None, None, (d.get("docker_url") or "")
    if prov == "harbor":
        res = g("event_data", "resources") or [{}]
        return None, None, (res[0].get("resource_url") or "").rsplit(":", 1)[0]
    if prov == "acr":
        return None, None, g("request", "host") + "/" + g("target", "repository")
    return None, None, None


def _get(d, *ks):
    for k in ks:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def main():
    made = 0
    for prov, f, kind in rows():
        path = FIX / prov / f
        name = "%s-%s" % (prov, f[: -len(".json")])
        out = CASES / name
        if (out / "case.json").exists():
            continue
        d = json.load(open(path))
        repo, ref, image = repo_and_ref(prov, d)
        stacks = []
        if image:
            stacks.append({"name": "follows-image", "image": image})
            stacks.append({"name": "other-image", "image": "example/not-this-image"})
        if repo:
            branch = ref[len("refs/heads/"):] if ref and ref.startswith("refs/heads/") else "main"
            follow = {"name": "follows-branch", "repository": repo, "branch": branch}
            stacks.append(follow)
            stacks.append({"name": "other-branch", "repository": repo, "branch": "never-pushed"})
            # Follows every branch and tag: for events that are not pushes it
            # proves the event itself never deploys, whatever branch it names.
            stacks.append({"name": "follows-everything", "repository": repo, "branch": "**", "tags": "**"})
            if ref and ref.startswith("refs/tags/"):
                stacks.append({"name": "follows-tags", "repository": repo, "branch": "main", "tags": "**"})
            if kind == "ping":
                stacks.append({"name": "ping-acknowledged", "repository": repo, "branch": "main", "ping": "acknowledge"})
            if kind == "deployment":
                env = _get(d, "deployment", "environment")
                stacks.append({"name": "github-cd", "repository": repo, "branch": "main",
                               "github": {"repository": repo, "environment": env}})
        if not stacks:
            stacks.append({"name": "unrelated", "repository": "example/unrelated", "branch": "main"})
        case = {"note": "%s %s (%s), as sent by the provider" % (prov, f, kind), "fixture": "%s/%s" % (prov, f), "stacks": stacks}
        if prov == "bitbucket-legacy-post":
            # The legacy POST service sends its JSON form-encoded as payload=.
            case["form"] = True
        out.mkdir(parents=True, exist_ok=True)
        (out / "case.json").write_text(json.dumps(case, indent=2) + "\n")
        made += 1
    print("scaffolded", made, "cases")


if __name__ == "__main__":
    main()
