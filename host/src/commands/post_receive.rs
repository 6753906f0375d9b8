//! `redeploy post-receive`: git's post-receive hook. Reads `<old> <new>
//! <ref>` lines on stdin, evaluates them through the component exactly as a
//! webhook would be, prints one line per stack (git shows them to the
//! pusher as `remote: ...`), and hands the deploys to a running server or
//! runs them itself.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::config::Config;
use crate::dispatch::{DeploySink, Dispatcher};
use crate::journal::{DeployRecord, DeployState};
use crate::metrics::Metrics;
use crate::plugin::wit;
use crate::runner::Enqueued;
use crate::tokens::token_for;

mod answer;
#[cfg(test)]
mod tests;

pub use answer::forced_note;
use answer::{describe_answer, print_lines};

/// The most bytes of post-receive input accepted: about 8,000 updates of
/// 500 bytes, or 40,000 of ordinary length. A push of more refs than this
/// is a mirror, not a deploy, and is refused whole (never cut: a cut inside
/// a ref name can turn `refs/heads/main-x` into `refs/heads/main`).
pub const MAX_INPUT_BYTES: u64 = 4 * 1024 * 1024;

/// The most bytes of a running server's answer to a forwarded push read;
/// the answer is one small JSON object per stack, so 1 MiB is ample.
pub const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// How long the hook waits to connect to `hook.server`: a loopback or LAN
/// server accepts in milliseconds; a push must not hang on a dead address.
pub const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one forwarded push may take in all (connect, send, answer).
/// The server answers before any deploy runs, as it does GitHub, which
/// gives a webhook 10 seconds; the same bound keeps a stuck server from
/// holding the pusher's `git push` longer than that per stack.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the hook refuses a push without evaluating it.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The input is over [`MAX_INPUT_BYTES`].
    #[error(
        "push refused: the post-receive input is over {MAX_INPUT_BYTES} bytes \
         (a push of this many refs is a mirror, not a deploy); nothing was evaluated or deployed"
    )]
    TooLarge,
    /// Reading stdin failed.
    #[error("reading post-receive input: {0}")]
    Read(std::io::Error),
}

/// Reads all of the hook's input, or refuses it whole over
/// [`MAX_INPUT_BYTES`]. Never returns a prefix.
pub fn read_input(reader: impl std::io::Read) -> Result<Vec<u8>, InputError> {
    crate::bounded::read_all(reader, MAX_INPUT_BYTES, "post-receive input").map_err(|e| {
        match e.kind() {
            std::io::ErrorKind::FileTooLarge => InputError::TooLarge,
            _ => InputError::Read(e),
        }
    })
}

/// Environment variables git servers use for the pusher's name, in order:
/// Gitea's, gitolite's (`GL_USER`, the name its `authorized_keys` line
/// gives), GitLab's, a web server's (`git http-backend` behind HTTP
/// authentication), and last the account the hook runs as.
pub const PUSHER_VARS: &[&str] = &[
    "GITEA_PUSHER_NAME",
    "GL_USER",
    "GL_USERNAME",
    "GL_ID",
    "REMOTE_USER",
    "USER",
];

/// The variable gitolite sets to the repository's name (`app`,
/// `team/app`: its path under gitolite's `repositories/`, without `.git`).
pub const GITOLITE_REPO_VAR: &str = "GL_REPO";

/// Runs as git's post-receive hook.
#[derive(Debug, clap::Args)]
pub struct PostReceive {
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
    /// Hand deploys to this running `redeploy serve` (overrides `hook.server`).
    #[arg(long)]
    pub server: Option<String>,
    /// The repository's identity (default: `$GIT_DIR`, else the current directory).
    #[arg(long)]
    pub repository: Option<String>,
}

/// The names a pushed repository goes by, from which each stack's
/// identity of the push is chosen ([`RepositoryNames::for_stack`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryNames {
    /// `--repository`, or the `[hook] repositories` name of this path:
    /// every stack sees it.
    pub fixed: Option<String>,
    /// The repository's path, resolved through symbolic links.
    pub path: String,
    /// gitolite's name for it (`GL_REPO`), when gitolite runs the hook.
    pub gitolite: Option<String>,
}

impl RepositoryNames {
    /// The identity the push is evaluated with for a stack whose
    /// `repository` settings are `settings`: the fixed name if there is
    /// one; else the path for a stack that names a local path (an absolute
    /// one, which the host resolves the same way); else gitolite's name
    /// when there is one (a stack naming `git@host:team/app` or `team/app`
    /// follows gitolite's `team/app`); else the path.
    pub fn for_stack<'a>(&self, settings: impl IntoIterator<Item = &'a str>) -> &str {
        if let Some(fixed) = &self.fixed {
            return fixed;
        }
        let names_a_path = settings.into_iter().any(|s| s.starts_with('/'));
        match &self.gitolite {
            Some(name) if !names_a_path => name,
            _ => &self.path,
        }
    }
}

/// The repository's names: `explicit` (`--repository`), the directory
/// (`$GIT_DIR`, else the current one) resolved through symbolic links and
/// looked up in `[hook] repositories` (whose paths are resolved too), and
/// gitolite's `GL_REPO`.
fn repository_names(
    config: &Config,
    explicit: Option<&str>,
    gitolite: Option<String>,
) -> anyhow::Result<RepositoryNames> {
    Ok(repository_names_at(
        config,
        repository_dir()?,
        explicit,
        gitolite,
    ))
}

/// [`repository_names`] of the repository at `dir` (resolved through
/// symbolic links).
pub fn repository_names_at(
    config: &Config,
    dir: PathBuf,
    explicit: Option<&str>,
    gitolite: Option<String>,
) -> RepositoryNames {
    let mapped = config.hook.repositories.iter().find(|(path, _)| {
        path.canonicalize()
            .map(|p| p == dir)
            .unwrap_or(*path == &dir)
    });
    RepositoryNames {
        fixed: explicit
            .map(str::to_string)
            .or_else(|| mapped.map(|(_, name)| name.clone())),
        path: dir.display().to_string(),
        gitolite: gitolite.filter(|g| !g.trim().is_empty()),
    }
}

/// The repository the hook runs in (`$GIT_DIR`, else the current
/// directory), resolved through symbolic links.
fn repository_dir() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("current directory")?;
    let dir = match std::env::var_os("GIT_DIR") {
        Some(d) => cwd.join(d),
        None => cwd,
    };
    dir.canonicalize()
        .with_context(|| format!("repository directory {}", dir.display()))
}

/// The `repository` settings of a stack and of its services.
fn repository_settings(stack: &crate::config::StackConfig) -> impl Iterator<Item = &str> {
    stack
        .repository
        .iter()
        .chain(stack.services.iter().filter_map(|s| s.repository.as_ref()))
        .map(String::as_str)
}

/// Asks git whether `old` is an ancestor of `new` in the repository at
/// `git_dir`: `Some(true)` or `Some(false)`, or `None` when git cannot say
/// (an object missing, git not found).
fn is_ancestor(git_dir: &Path, old: &str, new: &str) -> Option<bool> {
    let status = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["merge-base", "--is-ancestor", old, new])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    match status.code() {
        Some(0) => Some(true),
        Some(1) => Some(false),
        _ => None,
    }
}

/// Splits post-receive input into its `<old> <new> <ref>` lines (blank
/// lines skipped); a line of any other shape is an error quoting it, and
/// a ref name that is not UTF-8 is left out ([`Updates::not_utf8`]). The
/// object ids and ref names are checked by the component.
pub fn parse_updates(input: &[u8]) -> anyhow::Result<Updates> {
    let mut parsed = Updates::default();
    for line in input.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // git separates the fields with one space; a ref name may hold
        // other Unicode whitespace (a no-break space), never ASCII.
        let mut parts = line
            .split(u8::is_ascii_whitespace)
            .filter(|part| !part.is_empty());
        let fields = (parts.next(), parts.next(), parts.next(), parts.next());
        let (Some(old), Some(new), Some(name), None) = fields else {
            bail!(
                "post-receive input line \"{}\" is not \"<old> <new> <ref>\"",
                line.escape_ascii()
            );
        };
        let (Ok(old), Ok(new)) = (std::str::from_utf8(old), std::str::from_utf8(new)) else {
            bail!(
                "post-receive input line \"{}\" is not \"<old> <new> <ref>\"",
                line.escape_ascii()
            );
        };
        match std::str::from_utf8(name) {
            Ok(name) => parsed.updates.push(wit::RefUpdate {
                old: old.to_string(),
                new: new.to_string(),
                name: name.to_string(),
            }),
            Err(_) => parsed.not_utf8.push(name.escape_ascii().to_string()),
        }
    }
    Ok(parsed)
}

/// The ref updates of a hook's input ([`parse_updates`]).
#[derive(Debug, Default)]
pub struct Updates {
    /// One per line, in git's order.
    pub updates: Vec<wit::RefUpdate>,
    /// The names, escaped, of the refs left out because they are not UTF-8:
    /// git allows them, but every stack's branch and tag patterns are
    /// UTF-8, so no stack follows one, and the component takes only UTF-8.
    pub not_utf8: Vec<String>,
}

/// Each stack's decisions on `updates` (one, or one per ref it follows of
/// several), evaluated by the component with the stacks that see the
/// repository under one name together, as the hook evaluates a push.
/// `stacks` are `config`'s, in its order.
fn evaluate_by_name(
    runtime: &crate::plugin::PluginRuntime,
    config: &Config,
    stacks: Vec<wit::Stack>,
    names: &RepositoryNames,
    updates: &[wit::RefUpdate],
    pusher: &Option<String>,
) -> anyhow::Result<BTreeMap<String, Vec<wit::Decision>>> {
    let context = crate::stacks::evaluation_context(config, None);
    let mut groups: BTreeMap<String, Vec<wit::Stack>> = BTreeMap::new();
    for (stack, wit_stack) in config.stacks.iter().zip(stacks) {
        groups
            .entry(names.for_stack(repository_settings(stack)).to_string())
            .or_default()
            .push(wit_stack);
    }
    let mut decisions: BTreeMap<String, Vec<wit::Decision>> = BTreeMap::new();
    for (repository, group) in &groups {
        let delivery = wit::Delivery::PostReceive(wit::PostReceive {
            repository: repository.clone(),
            updates: updates.to_vec(),
            pusher: pusher.clone(),
            query: String::new(),
        });
        let outcome = runtime.evaluate(group, &delivery, &context)?.map_err(|e| {
            anyhow::anyhow!(
                "push not evaluated: {}",
                crate::text::one_line(&e.describe())
            )
        })?;
        for d in outcome.decisions {
            decisions.entry(d.stack.clone()).or_default().push(d);
        }
    }
    Ok(decisions)
}

/// The branch a follower probe deletes ([`stacks_following`]); any name
/// does, since no deletion deploys.
const PROBE_BRANCH: &str = "refs/heads/redeploy-install-hook-probe";

/// The names of `config`'s stacks that follow the repository `names`
/// names, by the component's own matching: each is shown the deletion of a
/// branch of it, which never deploys, and follows it when it answers that
/// the ref was deleted, not that the repository is another.
pub fn stacks_following(
    runtime: &crate::plugin::PluginRuntime,
    config: &Config,
    names: &RepositoryNames,
) -> anyhow::Result<Vec<String>> {
    let probe = wit::RefUpdate {
        old: "1".repeat(40),
        new: "0".repeat(40),
        name: PROBE_BRANCH.to_string(),
    };
    let stacks = crate::stacks::wit_stacks(config);
    let decisions = evaluate_by_name(runtime, config, stacks, names, &[probe], &None)?;
    Ok(config
        .stacks
        .iter()
        .filter(|s| {
            decisions.get(&s.name).is_some_and(|d| {
                d.iter()
                    .any(|d| matches!(d.action, wit::Action::Skip(wit::SkipCode::RefDeleted)))
            })
        })
        .map(|s| s.name.clone())
        .collect())
}

/// Starts `redeploy run-queued` detached for each stack that got a deploy,
/// or (with `hook.wait`) remembers the stacks to run in this process.
struct LocalSink {
    config_path: PathBuf,
    wait: bool,
    stacks: Mutex<BTreeSet<String>>,
}

impl DeploySink for LocalSink {
    fn accept(&self, record: &DeployRecord) -> Enqueued {
        let first = self
            .stacks
            .lock()
            .unwrap()
            .insert(record.queued.stack.clone());
        if first && !self.wait {
            if let Err(e) = spawn_runner(&self.config_path, &record.queued.stack) {
                return Enqueued::Cancelled(format!(
                    "could not start the deploy runner: {e:#}; the deploy stays queued"
                ));
            }
        }
        Enqueued::Queued
    }
}

fn spawn_runner(config_path: &Path, stack: &str) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe().context("finding the redeploy binary")?;
    // Detached: its own process group and no pipes to git, so the push
    // returns at once and does not wait for the deploy.
    std::process::Command::new(exe)
        .arg("run-queued")
        .arg("--config")
        .arg(config_path)
        .args(["--stack", stack])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting redeploy run-queued")?;
    Ok(())
}

impl PostReceive {
    /// Evaluates the push and deploys what matches.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = Arc::new(self.config.load()?);
        let config_path = self
            .config
            .path
            .canonicalize()
            .with_context(|| format!("config {}", self.config.path.display()))?;
        // Checked before anything is read, as `[hook] server` is.
        let server = match &self.server {
            Some(url) => Some(
                crate::config::server_url(url).map_err(|why| anyhow::anyhow!("--server {why}"))?,
            ),
            None => config.hook.server.clone(),
        };
        if server.is_some() && config.hook.wait {
            // As the config's own check refuses `[hook] server` with it.
            anyhow::bail!(
                "--server with [hook] wait = true: the hook hands each deploy to the server and returns; remove one of the two"
            );
        }
        // A refusal goes to stderr as `redeploy: push refused: ...` (git
        // shows it to the pusher as a `remote:` line) with a non-zero exit.
        let input = read_input(std::io::stdin().lock())?;
        let Updates { updates, not_utf8 } = parse_updates(&input)?;
        let names = repository_names(
            &config,
            self.repository.as_deref(),
            std::env::var(GITOLITE_REPO_VAR).ok(),
        )?;
        let pusher = PUSHER_VARS
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
        // Each stack sees the push under the name it follows the repository
        // by (its path, gitolite's name, or the fixed one).
        let push_for = |stack: &crate::config::StackConfig| wit::PostReceive {
            repository: names.for_stack(repository_settings(stack)).to_string(),
            updates: updates.clone(),
            pusher: pusher.clone(),
            query: String::new(),
        };
        // Before the component's cache is read or written there, and whether
        // or not the push deploys: the pusher sees why and the admin learns.
        crate::ownership::check_state_dir_private(&config.server.state_dir)?;
        let runtime = Arc::new(super::one_shot_component(&config)?);
        let stacks = crate::stacks::wit_stacks(&config);
        crate::stacks::validate(&runtime, &stacks, &self.config.path)?;
        // A first look, to learn whether anything deploys before opening the
        // journal; the dispatcher below (or the server) evaluates it for real,
        // with the deployment key. Stacks that see the push under one name
        // are evaluated together.
        let decisions = evaluate_by_name(&runtime, &config, stacks, &names, &updates, &pusher)?;
        let mut deploying: Vec<&crate::config::StackConfig> = Vec::new();
        // One line, however many: the pusher chose them.
        let mut out: Vec<String> = match not_utf8.as_slice() {
            [] => vec![],
            [name] => vec![format!(
                "redeploy: ref \"{name}\" is not UTF-8, so no stack follows it: not deploying it"
            )],
            [name, rest @ ..] => vec![format!(
                "redeploy: ref \"{name}\" and {} more are not UTF-8, so no stack follows them: not deploying them",
                rest.len()
            )],
        };
        for stack in &config.stacks {
            let Some(of_stack) = decisions.get(&stack.name) else {
                continue;
            };
            // A stack that deploys one ref and skips another says both,
            // the skip here and the deploy with the answer below.
            for d in of_stack {
                if let wit::Action::Skip(_) = d.action {
                    out.push(format!(
                        "redeploy: {}: not deploying: {}",
                        d.stack, d.reason
                    ));
                }
            }
            if of_stack.iter().any(|d| d.action.event().is_some()) {
                deploying.push(stack);
            }
        }
        if deploying.is_empty() {
            print_lines(&out);
            return Ok(());
        }
        // Whether each deploying ref was forced, asked of git once per ref
        // (only now: a push that deploys nothing asks nothing).
        let forced: RefCell<BTreeMap<String, Option<String>>> = RefCell::new(BTreeMap::new());
        let forced_note_for = |git_ref: &str| -> Option<String> {
            forced
                .borrow_mut()
                .entry(git_ref.to_string())
                .or_insert_with(|| {
                    let update = updates.iter().find(|u| u.name == git_ref)?;
                    let dir = Path::new(&names.path);
                    forced_note(update, is_ancestor(dir, &update.old, &update.new))
                })
                .clone()
        };
        if server.is_none() && config.journal.postgres.is_some() {
            // Deploys run here would take turns with a `serve` only through
            // this machine's state directory; a serve on another machine
            // shares the database, not the directory.
            print_lines(&out);
            anyhow::bail!(
                "not deploying: on a PostgreSQL journal the hook hands pushes to `redeploy serve`; set [hook] server"
            );
        }
        let journal = Arc::new(super::open_state(&config)?);
        match server {
            Some(server) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let client = reqwest::Client::builder()
                    .connect_timeout(FORWARD_CONNECT_TIMEOUT)
                    .timeout(FORWARD_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .context("building the HTTP client")?;
                for stack_config in &deploying {
                    let stack = stack_config.name.as_str();
                    let token = token_for(&config, &journal, stack)?;
                    let url = format!(
                        "{}/hooks/{token}/post-receive",
                        server.trim_end_matches('/')
                    );
                    // The server refuses a push forwarded too long ago, and
                    // the same one twice; a stack with secrets accepts it
                    // only signed. The component writes the request.
                    let timestamp = u64::try_from(crate::journal::now_ms() / 1000).unwrap_or(0);
                    let secret = stack_config.secrets.first().map(|s| s.expose());
                    let push = push_for(stack_config);
                    let forwarded = runtime.forward_push(stack, &push, timestamp, secret)?;
                    let mut request = client.post(&url);
                    for (name, value) in &forwarded.headers {
                        request = request.header(name, value);
                    }
                    let body = forwarded.body;
                    let answer = rt.block_on(async {
                        let resp = request
                            .body(body)
                            .send()
                            .await
                            .map_err(|e| e.without_url())?;
                        let status = resp.status();
                        let body = crate::bounded::response_body(resp, MAX_ANSWER_BYTES)
                            .await
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_else(|e| {
                                serde_json::json!({"error": "unreadable-answer", "message": e.to_string()})
                                    .to_string()
                            });
                        Ok::<_, reqwest::Error>((status, body))
                    });
                    match answer {
                        Ok((status, body)) => out.extend(describe_answer(
                            stack,
                            status.as_u16(),
                            &body,
                            &server,
                            &forced_note_for,
                        )),
                        Err(e) => out.push(format!(
                            "redeploy: {stack}: NOT deployed: cannot reach {server}: {e}"
                        )),
                    }
                }
            }
            None => {
                let sink = Arc::new(LocalSink {
                    config_path: config_path.clone(),
                    wait: config.hook.wait,
                    stacks: Mutex::new(BTreeSet::new()),
                });
                let dispatcher = Dispatcher::new(
                    runtime,
                    journal.clone(),
                    sink.clone(),
                    config.clone(),
                    Arc::new(Metrics::new()),
                );
                // Each stack's deploys this push queued, as answered (a
                // stack whose services follow several of the refs has one
                // per ref), and whether it asked GitHub for a deployment.
                let mut queued: BTreeMap<String, Vec<i64>> = BTreeMap::new();
                let mut asked: BTreeSet<String> = BTreeSet::new();
                for stack_config in &deploying {
                    let stack = stack_config.name.as_str();
                    let delivery = wit::Delivery::PostReceive(push_for(stack_config));
                    let answer = dispatcher.dispatch(&[stack_config], &delivery);
                    for d in answer.body["decisions"].as_array().into_iter().flatten() {
                        match (d["state"].as_str(), d["deploy_id"].as_i64()) {
                            (Some("queued"), Some(id)) => {
                                queued.entry(stack.to_string()).or_default().push(id)
                            }
                            (Some("deployment-requested"), _) => {
                                asked.insert(stack.to_string());
                            }
                            _ => {}
                        }
                    }
                    // A GitHub deployment request waits for a runner to send it.
                    let requested = journal
                        .pending_deployment_requests(Some(stack))
                        .is_ok_and(|r| !r.is_empty());
                    if requested
                        && sink.stacks.lock().unwrap().insert(stack.to_string())
                        && !config.hook.wait
                    {
                        if let Err(e) = spawn_runner(&config_path, stack) {
                            out.push(format!("redeploy: {stack}: cannot start the runner that sends the GitHub deployment request: {e:#}"));
                        }
                    }
                    out.extend(describe_answer(
                        stack,
                        answer.status,
                        &answer.body.to_string(),
                        "this host",
                        &forced_note_for,
                    ));
                }
                if config.hook.wait {
                    print_lines(&out);
                    out.clear();
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let stacks: Vec<String> = sink.stacks.lock().unwrap().iter().cloned().collect();
                    let mut failed = Vec::new();
                    for stack in stacks {
                        rt.block_on(super::run_queued::run_queued_in_foreground(
                            config.clone(),
                            journal.clone(),
                            &stack,
                        ))?;
                        let mut ran = queued
                            .get(&stack)
                            .into_iter()
                            .flatten()
                            .map(|&id| journal.deploy(id))
                            .filter_map(Result::transpose)
                            .collect::<Result<Vec<_>, _>>()?;
                        // A GitHub deployment request's deploy (its
                        // fallback, run when the request failed) is queued
                        // by the runner: the stack's newest, if not shown.
                        if asked.contains(&stack) {
                            for d in journal.deploys(Some(&stack), 1)? {
                                if !ran.iter().any(|r| r.id == d.id) {
                                    ran.push(d);
                                }
                            }
                        }
                        for d in ran {
                            if let Some(log) = d.log_path.as_deref() {
                                for line in std::fs::read_to_string(log).unwrap_or_default().lines()
                                {
                                    out.push(format!("redeploy: {stack}: | {line}"));
                                }
                            }
                            out.push(format!(
                                "redeploy: {stack}: deploy #{} {}",
                                d.id,
                                d.state.as_str()
                            ));
                            if matches!(d.state, DeployState::Failed | DeployState::Interrupted) {
                                failed.push(format!("#{} of {stack} {}", d.id, d.state.as_str()));
                            }
                        }
                    }
                    // The push itself stands (post-receive runs after the
                    // refs moved); a non-zero exit makes git say the hook
                    // failed, so the pusher sees the deploy did.
                    if !failed.is_empty() {
                        print_lines(&out);
                        bail!("deploy {} (the push itself is kept)", failed.join(", "));
                    }
                }
            }
        }
        print_lines(&out);
        Ok(())
    }
}
