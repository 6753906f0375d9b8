//! The README (and `docs/*.md`) cannot drift (issue 14): their code
//! blocks and code spans are read with a Markdown parser, and
//! - every `redeploy` command in a code block parses with the real command
//!   line (with and without its `[optional]` parts), and every inline
//!   `redeploy ...` names real subcommands and options;
//! - every TOML block is a valid configuration (a `[stacks.*]` table inside
//!   a stack);
//! - every command run against `examples/redeploy.toml` runs, from the
//!   workspace as a newcomer runs it, and exits 0; the output blocks shown
//!   after `config check` and `check` are what those commands print.

use std::path::Path;
use std::process::Command;

use clap::Parser as _;
use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};
use redeploy_host::cli::Cli;

use crate::support::cli::{stderr, stdout};
use crate::support::git::git;
use crate::support::{redeploy_bin, workspace};

/// One code block: its language (`""` for an indented block) and text.
struct Block {
    lang: String,
    text: String,
}

/// The README's text, then each of `docs/*.md` (the README points to
/// them for recipes, such as gitolite's), in name order.
fn readme() -> String {
    let mut text = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let mut docs: Vec<_> = std::fs::read_dir(workspace().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    for doc in docs {
        text.push_str("\n\n");
        text.push_str(&std::fs::read_to_string(doc).unwrap());
    }
    text
}

/// The README's code blocks, in order.
fn blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for event in Parser::new(md) {
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(lang) => lang.to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                current = Some(Block {
                    lang,
                    text: String::new(),
                });
            }
            Event::Text(text) => {
                if let Some(block) = &mut current {
                    block.text.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => out.extend(current.take()),
            _ => {}
        }
    }
    out
}

/// The `redeploy` commands of the README's code spans (as the arguments
/// after the program name, read as [`commands`] reads a line).
fn inline_commands(md: &str) -> Vec<String> {
    Parser::new(md)
        .filter_map(|event| match event {
            Event::Code(code) => Some(code.to_string()),
            _ => None,
        })
        .flat_map(|code| command_line(&code))
        .collect()
}

/// Whether a block holds shell commands (not JSON, YAML, TOML or output).
fn is_shell(block: &Block) -> bool {
    matches!(
        block.lang.as_str(),
        "" | "sh" | "bash" | "shell" | "console"
    )
}

/// The `redeploy` commands of a shell block, as the arguments after the
/// program name: lines continued with `\` joined; each `$(...)` inside a
/// line taken as a command of its own; a redirection (`> FILE`) cut off;
/// each command of a list (`a && b`, `a; b`, `a | b`) read.
fn commands(block: &str) -> Vec<String> {
    let joined = block.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let mut rest = line.trim();
        while let Some(start) = rest.find("$(") {
            let end = start + rest[start..].find(')').expect("a closed $( in the README");
            out.extend(command_line(&rest[start + 2..end]));
            rest = &rest[end + 1..];
        }
        out.extend(command_line(line.trim()));
    }
    out
}

/// `line` split at `&&`, `||`, `;` and `|` outside quotes.
fn simple_commands(line: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quote) = (Vec::new(), 0, None);
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == b';' || c == b'|' || c == b'&' => {
                parts.push(&line[start..i]);
                while i + 1 < bytes.len() && bytes[i + 1] == c {
                    i += 1;
                }
                start = i + 1;
            }
            None => {}
        }
        i += 1;
    }
    parts.push(&line[start..]);
    parts
}

/// The arguments of each `redeploy` command of one line: run directly, by
/// path (`/usr/bin/redeploy`), as another user (`sudo -u redeploy
/// redeploy`), after `exec`, `env` or `VAR=value`, inside `sh -c '...'`,
/// or as `cargo run ... -- ARGS`.
fn command_line(line: &str) -> Vec<String> {
    simple_commands(line)
        .into_iter()
        .flat_map(|part| {
            let part = part.split(" > ").next().unwrap();
            let words = shlex::split(part)
                .unwrap_or_else(|| panic!("unbalanced quotes in the README: {part}"));
            redeploy_args(&words)
        })
        .collect()
}

/// [`command_line`] for one simple command's words.
fn redeploy_args(words: &[String]) -> Vec<String> {
    let join = |w: &[String]| shlex::try_join(w.iter().map(String::as_str)).unwrap();
    let mut w = words;
    loop {
        match w.first().map(String::as_str) {
            Some("sudo") => {
                w = &w[1..];
                while let Some(opt) = w.first().filter(|o| o.starts_with('-')) {
                    w = &w[if opt == "-u" || opt == "-g" { 2 } else { 1 }..];
                }
            }
            Some("$" | "exec" | "env") => w = &w[1..],
            Some(word) if word.contains('=') && !word.starts_with('-') => w = &w[1..],
            Some("sh" | "bash") if w.get(1).map(String::as_str) == Some("-c") => {
                return w
                    .get(2)
                    .map(|script| command_line(script))
                    .unwrap_or_default();
            }
            _ => break,
        }
    }
    match w {
        [first, rest @ ..] if first == "redeploy" || first.ends_with("/redeploy") => {
            vec![join(rest)]
        }
        [cargo, run, ..] if cargo == "cargo" && run == "run" => w
            .iter()
            .position(|x| x == "--")
            .map(|at| vec![join(&w[at + 1..])])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// `text` with every `[...]` group removed (`keep = false`) or with the
/// brackets dropped and their contents kept (`keep = true`).
fn optional_parts(text: &str, keep: bool) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in text.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 || keep => out.push(c),
            _ => {}
        }
    }
    out
}

/// Parses `args` with the real command line; the error if it does not.
fn parse(args: &str) -> Result<(), String> {
    let words = shlex::split(args).ok_or_else(|| format!("unbalanced quotes in {args}"))?;
    Cli::try_parse_from(std::iter::once("redeploy".to_string()).chain(words))
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Every README command, in both variants of its optional parts (left
/// out, and put in).
fn readme_commands() -> Vec<String> {
    let mut all = Vec::new();
    for block in blocks(&readme()).iter().filter(|b| is_shell(b)) {
        for keep in [false, true] {
            for c in commands(&optional_parts(&block.text, keep)) {
                if !all.contains(&c) {
                    all.push(c);
                }
            }
        }
    }
    all
}

#[test]
fn readme_every_redeploy_command_parses_with_the_real_command_line() {
    let commands = readme_commands();
    // The README shows more than a dozen: an extraction that finds a few
    // has stopped reading it.
    assert!(commands.len() >= 12, "{commands:#?}");
    let mut failures = Vec::new();
    for c in &commands {
        if let Err(e) = parse(c) {
            failures.push(format!("redeploy {c}\n{e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn readme_every_inline_redeploy_command_names_real_subcommands_and_options() {
    let spans = inline_commands(&readme());
    assert!(spans.len() >= 10, "{spans:#?}");
    let root = <Cli as clap::CommandFactory>::command();
    let mut failures = Vec::new();
    for span in spans.iter().filter(|s| !s.is_empty()) {
        let words = shlex::split(span).unwrap();
        let words: Vec<&str> = words.iter().map(|w| w.trim_matches(['[', ']'])).collect();
        let mut cmd = &root;
        let mut rest = &words[..];
        // The subcommand path: `github connect`, `config check`, ...
        while let Some(sub) = rest.first().and_then(|w| cmd.find_subcommand(w)) {
            cmd = sub;
            rest = &rest[1..];
        }
        if std::ptr::eq(cmd, &root) {
            failures.push(format!("`{span}`: no such subcommand"));
            continue;
        }
        for word in rest {
            let Some(long) = word.strip_prefix("--") else {
                continue;
            };
            let long = long.split('=').next().unwrap();
            let known = long == "help" || cmd.get_arguments().any(|a| a.get_long() == Some(long));
            if !known {
                failures.push(format!("`{span}`: `{}` has no --{long}", cmd.get_name()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Secrets for validating README snippets: every variable and file
/// holds a placeholder, a URL where its name says it holds one (a
/// notification channel's `url_env`, `url_file`).
struct Placeholders;

fn placeholder(name: &str) -> String {
    if name.to_ascii_lowercase().contains("url") {
        "https://hooks.example.invalid/placeholder-secret-value".into()
    } else {
        "placeholder-secret-value".into()
    }
}

impl redeploy_host::config::SecretSource for Placeholders {
    fn var(&self, var: &str) -> Result<String, std::env::VarError> {
        Ok(placeholder(var))
    }

    fn read(&self, path: &Path) -> std::io::Result<String> {
        Ok(placeholder(&path.to_string_lossy()))
    }
}

/// A stack the README's `[stacks.*]` snippets are validated inside.
const SNIPPET_STACK: &str =
    "[[stacks]]\nname = \"web\"\nrepository = \"acme/web\"\nbranch = \"main\"\ncommand = [\"true\"]\n";

#[test]
fn readme_every_toml_block_is_a_valid_configuration() {
    let toml: Vec<Block> = blocks(&readme())
        .into_iter()
        .filter(|b| b.lang == "toml")
        .collect();
    assert!(!toml.is_empty(), "the README shows no TOML");
    for block in toml {
        let text = if block.text.trim_start().starts_with("[stacks.") {
            format!("{SNIPPET_STACK}{}", block.text)
        } else {
            block.text.clone()
        };
        if let Err(e) =
            redeploy_host::config::parse_with(&text, Path::new("/etc/redeploy"), &Placeholders)
        {
            panic!("{e}\nin the README's TOML:\n{}", block.text);
        }
    }
}

/// Runs `redeploy ARGS` from the workspace, as the README's reader does.
fn run_in_workspace(args: &str) -> std::process::Output {
    Command::new(redeploy_bin())
        .args(shlex::split(args).unwrap())
        .current_dir(workspace())
        .env_remove(redeploy_host::commands::CONFIG_ENV)
        .output()
        .unwrap()
}

/// The README's commands that read `examples/redeploy.toml` and return
/// (`serve` runs until stopped: `serve::` tests start it).
fn example_commands() -> Vec<String> {
    readme_commands()
        .into_iter()
        .filter(|c| c.contains("examples/redeploy.toml") && !c.starts_with("serve "))
        .collect()
}

#[test]
fn readme_every_command_on_the_example_config_runs() {
    let commands = example_commands();
    assert!(commands.len() >= 3, "{commands:#?}");
    for c in commands {
        let out = run_in_workspace(&c);
        assert!(
            out.status.success(),
            "redeploy {c}\n{}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

/// The block right after the first block running `redeploy <subcommand>`:
/// the output the README shows for it.
fn shown_output(subcommand: &str) -> (String, String) {
    let blocks = blocks(&readme());
    let at = blocks
        .iter()
        .position(|b| {
            is_shell(b)
                && commands(&b.text)
                    .iter()
                    .any(|c| c.starts_with(&format!("{subcommand} ")))
        })
        .unwrap_or_else(|| panic!("the README runs no `redeploy {subcommand}`"));
    let command = commands(&optional_parts(&blocks[at].text, false))
        .into_iter()
        .find(|c| c.starts_with(&format!("{subcommand} ")))
        .unwrap();
    (command, blocks[at + 1].text.clone())
}

#[test]
fn readme_config_check_output_is_what_config_check_prints() {
    let (command, shown) = shown_output("config check");
    let out = run_in_workspace(&command);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let shown: Vec<&str> = shown.lines().filter(|l| l.trim() != "...").collect();
    assert!(shown.len() >= 5, "{shown:#?}");
    // The lines shown appear in the output, in the same order.
    let mut from = 0;
    for line in shown {
        match printed[from..].find(&format!("{line}\n")) {
            Some(at) => from += at + line.len(),
            None => panic!("the README shows {line:?}, which `redeploy {command}` does not print (in this order):\n{printed}"),
        }
    }
}

/// The paths of every key in a JSON value (`decisions[].deploy.sha`),
/// leaving out the README's `"..."` placeholder keys.
fn key_paths(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "..." {
                    continue;
                }
                let path = format!("{prefix}.{k}");
                out.push(path.clone());
                key_paths(v, &path, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn readme_check_json_shows_the_keys_check_prints() {
    let (command, shown) = shown_output("check");
    let out = run_in_workspace(&command);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown: serde_json::Value =
        serde_json::from_str(&shown).expect("the README's check JSON parses");
    let (mut want, mut have) = (Vec::new(), Vec::new());
    key_paths(&shown, "", &mut want);
    key_paths(&printed, "", &mut have);
    assert!(want.len() >= 20, "{want:#?}");
    let missing: Vec<&String> = want.iter().filter(|k| !have.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "the README shows keys `check` does not print: {missing:?}"
    );
    // And the values it shows in full are the ones printed.
    assert_eq!(shown["provider"], printed["provider"]);
    assert_eq!(shown["event"], printed["event"]);
    assert_eq!(
        shown["decisions"][0]["reason"],
        printed["decisions"][0]["reason"]
    );
}

/// `line` with the number after each `deploy #` replaced by `N`.
fn any_deploy_number(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("deploy #") {
        out.push_str(&rest[..at + "deploy #".len()]);
        rest = rest[at + "deploy #".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

#[test]
fn readme_the_post_receive_lines_it_shows_are_what_a_push_prints() {
    let shown: Vec<String> = blocks(&readme())
        .iter()
        .flat_map(|b| b.text.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| l.starts_with("remote: redeploy: "))
        .collect();
    assert!(shown.len() >= 2, "{shown:#?}");
    // The README's repository, stacks and branches, in a folder.
    let dir = crate::support::TempDir::new("readme-post-receive");
    let repo = dir.join("app.git");
    let repo_path = repo.to_str().unwrap();
    git(
        &dir.0,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            repo_path,
        ],
    );
    let config = dir.join("redeploy.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nstate_dir = \"state\"\n\n\
             [[stacks]]\nname = \"app\"\nrepository = {repo_path:?}\nbranch = \"main\"\ncommand = [\"true\"]\n\n\
             [[stacks]]\nname = \"docs\"\nrepository = {repo_path:?}\nbranch = \"gh-pages\"\ncommand = [\"true\"]\n"
        ),
    )
    .unwrap();
    let out = Command::new(redeploy_bin())
        .args(["install-hook", repo_path, "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let work = dir.join("work");
    git(
        &dir.0,
        &["clone", "--quiet", repo_path, work.to_str().unwrap()],
    );
    git(&work, &["checkout", "--quiet", "-B", "main"]);
    git(
        &work,
        &["commit", "--quiet", "--allow-empty", "-m", "deploy"],
    );
    let pushed = git(&work, &["push", "origin", "main"]);
    let printed: Vec<String> = pushed
        .lines()
        .filter(|l| l.starts_with("remote: redeploy: "))
        .map(|l| any_deploy_number(l.trim_end()))
        .collect();
    for line in &shown {
        let want = any_deploy_number(&line.replace("/srv/git/app.git", repo_path));
        assert!(
            printed.contains(&want),
            "the README shows\n  {line}\nbut the push printed\n  {}",
            printed.join("\n  ")
        );
    }
}

/// The README's code block that contains `needle` (a sample output that a
/// test producing that output compares with what it printed).
pub fn block_containing(needle: &str) -> String {
    blocks(&readme())
        .into_iter()
        .find(|b| b.text.contains(needle))
        .unwrap_or_else(|| panic!("no README code block contains {needle:?}"))
        .text
}

/// `text` with each RFC 3339 time to the second (`2026-12-01T11:42:19Z`)
/// replaced by `TIME`, so that sample output compares with a new run.
pub fn any_time(text: &str) -> String {
    text.lines()
        .map(|line| {
            line.split(' ')
                .map(|word| {
                    let b = word.as_bytes();
                    if b.len() == 20 && b[4] == b'-' && b[10] == b'T' && b[19] == b'Z' {
                        "TIME"
                    } else {
                        word
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
