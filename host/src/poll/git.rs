//! Asking a git repository for its branches and tags: `git ls-remote`, run
//! with the stack's credentials, a time limit and bounded output.
//!
//! The token goes only to a repository on a host `poll.token_hosts` lists.
//! The credentials never reach a command line, a log or the journal: an
//! HTTPS token goes to git as an `http.extraHeader` through the
//! environment (`GIT_CONFIG_COUNT`), readable only by this user; an SSH key
//! is named in `GIT_SSH_COMMAND`. git never prompts (`GIT_TERMINAL_PROMPT`,
//! ssh's `BatchMode`), follows no HTTP redirect (the token would go along),
//! and speaks only the protocols a poll URL may name (`GIT_ALLOW_PROTOCOL`:
//! no `ext::`).

use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};

use super::tips::{parse_ls_remote, RefFilter, Tips};
use crate::config::{PollConfig, PollTarget};

/// The most `git ls-remote` may print of the refs a stack follows: more is
/// refused whole. Lines of other refs (git prints refs that only end like
/// a followed one) are read and dropped, and not counted.
pub const MAX_LS_REMOTE_BYTES: u64 = 16 * 1024 * 1024;

/// The longest line of `git ls-remote`'s answer read whole: a longer one
/// is judged by its start (dropped when it is of a ref not followed,
/// refused otherwise).
const MAX_LS_REMOTE_LINE_BYTES: u64 = 64 * 1024;

/// The most of git's error output kept for the message.
const MAX_GIT_STDERR_BYTES: u64 = 16 * 1024;

/// The transports git may use for a poll (`GIT_ALLOW_PROTOCOL`).
const ALLOWED_PROTOCOLS: &str = "https:http:ssh:git:file";

/// Why a look at a repository failed, in one line.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// git could not be started.
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    /// git took longer than the stack's `poll.timeout`.
    #[error("git ls-remote took longer than {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// git failed: its exit and the last line it printed.
    #[error("git ls-remote failed ({status}): {message}")]
    Failed {
        /// The exit status, as git's process ended.
        status: String,
        /// git's last line of error output.
        message: String,
    },
    /// What git printed is not a list of refs, or too long.
    #[error("{0}")]
    Answer(String),
}

/// Single-quotes `s` for the shell that runs `GIT_SSH_COMMAND`.
fn shell_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether `poll`'s token, if it has one, goes to `target`: only to a host
/// `poll.token_hosts` lists (over https, or http to a loopback host); an
/// ssh repository uses its key.
fn token_listed(target: &PollTarget, poll: &PollConfig) -> bool {
    url::Url::parse(&target.url)
        .is_ok_and(|url| matches!(url.scheme(), "https" | "http") && poll.sends_token_to(&url))
}

/// What git's `message` means for a poll: git asks for a username when the
/// server refuses the request without one, and, its prompts disabled, says
/// only that it "could not read Username"; that is the server refusing the
/// credentials sent, or asking for some.
fn explained(message: String, target: &PollTarget, poll: &PollConfig) -> String {
    if !message.contains("terminal prompts disabled") {
        return message;
    }
    if poll.token.is_some() && token_listed(target, poll) {
        "the server refused the credentials (poll.username and the token): check both".to_owned()
    } else {
        "the server asks for credentials and none were sent: set poll.token_file or poll.token_env (and poll.token_hosts for another host)".to_owned()
    }
}

/// The `git ls-remote` command for `target`'s refs that `filter` keeps,
/// with `poll`'s credentials.
fn command(target: &PollTarget, poll: &PollConfig, filter: &RefFilter) -> tokio::process::Command {
    let mut git = tokio::process::Command::new("git");
    git.args([
        "ls-remote",
        "--heads",
        "--tags",
        "--refs",
        "--",
        &target.url,
    ])
    .args(filter.patterns())
    .env("GIT_TERMINAL_PROMPT", "0")
    .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS)
    .env("LC_ALL", "C")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    let mut settings: Vec<(&str, String)> = vec![("http.followRedirects", "false".into())];
    if let Some(token) = poll.token.as_ref().filter(|_| token_listed(target, poll)) {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            poll.username,
            token.expose()
        ));
        settings.push(("http.extraHeader", format!("Authorization: Basic {basic}")));
    }
    git.env("GIT_CONFIG_COUNT", settings.len().to_string());
    for (n, (key, value)) in settings.into_iter().enumerate() {
        git.env(format!("GIT_CONFIG_KEY_{n}"), key)
            .env(format!("GIT_CONFIG_VALUE_{n}"), value);
    }
    let mut ssh = String::from("ssh -o BatchMode=yes");
    if let Some(key) = &poll.ssh_key_file {
        ssh.push_str(" -o IdentitiesOnly=yes -i ");
        ssh.push_str(&shell_quoted(&key.to_string_lossy()));
    }
    git.env("GIT_SSH_COMMAND", ssh);
    git
}

/// The branches and tags of `target` that `filter` keeps, as `git
/// ls-remote` lists them now.
pub async fn ls_remote(
    target: &PollTarget,
    poll: &PollConfig,
    filter: &RefFilter,
) -> Result<Tips, PollError> {
    if filter.patterns().next().is_none() {
        // No pattern would ask for every ref: none is followed.
        return Ok(Tips::new());
    }
    let mut child = command(target, poll, filter)
        .spawn()
        .map_err(PollError::Spawn)?;
    let group = child.id().map(|pid| pid as i32);
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let reading = kept_lines(&mut stdout, filter, &mut out);
        // All of it is read (git must never block writing it), the start
        // kept.
        let erring = async {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
                let room = (MAX_GIT_STDERR_BYTES as usize).saturating_sub(err.len());
                err.extend_from_slice(&chunk[..n.min(room)]);
            }
        };
        {
            let (mut reading, mut erring) = (std::pin::pin!(reading), std::pin::pin!(erring));
            let mut erred = false;
            let read = loop {
                tokio::select! {
                    read = &mut reading => break read,
                    () = &mut erring, if !erred => erred = true,
                }
            };
            if let Err(refused) = read {
                // Refused unread: git (and what it started) is stopped,
                // not waited for.
                kill_group(group);
                return Err(refused);
            }
            if !erred {
                erring.await;
            }
        }
        let status = child.wait().await.map_err(PollError::Spawn)?;
        if !status.success() {
            let text = String::from_utf8_lossy(&err);
            let lines = || text.lines().map(str::trim).filter(|l| !l.is_empty());
            // git's first `fatal:` says what went wrong; its last lines
            // are advice ("Please make sure you have the correct access
            // rights...").
            let message = lines()
                .find_map(|l| {
                    l.strip_prefix("fatal: ")
                        .or_else(|| l.strip_prefix("error: "))
                })
                .or_else(|| lines().next_back())
                .unwrap_or("no message")
                .to_owned();
            return Err(PollError::Failed {
                status: status.to_string(),
                message: explained(crate::text::one_line(&message).to_string(), target, poll),
            });
        }
        parse_ls_remote(&out, filter).map_err(PollError::Answer)
    };
    match tokio::time::timeout(poll.timeout, run).await {
        Ok(result) => result,
        Err(_) => {
            kill_group(group);
            Err(PollError::Timeout(poll.timeout))
        }
    }
}

/// Kills git's process group: git and what it started (ssh, a remote
/// helper). git is not waited for yet, so its pid, the group's id, is not
/// reused meanwhile.
fn kill_group(group: Option<i32>) {
    if let Some(group) = group {
        // SAFETY: kill(2) of the process group git leads.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

/// Reads into `buf` (emptied first) the next line of `reader`, or its next
/// [`MAX_LS_REMOTE_LINE_BYTES`] when it is longer; how many bytes were
/// read (none at the end).
async fn line_part(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
) -> Result<usize, PollError> {
    buf.clear();
    reader
        .take(MAX_LS_REMOTE_LINE_BYTES)
        .read_until(b'\n', buf)
        .await
        .map_err(PollError::Spawn)
}

/// Reads all of git's answer from `stdout` (git must never block writing
/// it), keeping in `out` the lines of refs `filter` keeps
/// ([`RefFilter::keeps_line`]); more than [`MAX_LS_REMOTE_BYTES`] of them,
/// or a kept line longer than [`MAX_LS_REMOTE_LINE_BYTES`], refuses the
/// answer at once.
async fn kept_lines(
    stdout: &mut (impl tokio::io::AsyncRead + Unpin),
    filter: &RefFilter,
    out: &mut Vec<u8>,
) -> Result<(), PollError> {
    let mut reader = tokio::io::BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        let read = line_part(&mut reader, &mut line).await?;
        if read == 0 {
            return Ok(());
        }
        let whole = line.ends_with(b"\n") || (read as u64) < MAX_LS_REMOTE_LINE_BYTES;
        let kept = filter.keeps_line(&line);
        if !whole {
            if kept {
                return Err(PollError::Answer(format!(
                    "git ls-remote printed a line of a followed ref longer than {MAX_LS_REMOTE_LINE_BYTES} bytes"
                )));
            }
            // The rest of a dropped line.
            while line_part(&mut reader, &mut line).await? > 0 && !line.ends_with(b"\n") {}
            continue;
        }
        if kept {
            if (out.len() + line.len()) as u64 > MAX_LS_REMOTE_BYTES {
                return Err(PollError::Answer(format!(
                    "git ls-remote printed more than {MAX_LS_REMOTE_BYTES} bytes of refs the stack follows"
                )));
            }
            out.extend_from_slice(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ssh_key_path_is_quoted_for_the_shell() {
        assert_eq!(shell_quoted("/etc/redeploy/key"), "'/etc/redeploy/key'");
        assert_eq!(
            shell_quoted("/k'; touch /tmp/x; '"),
            r"'/k'\''; touch /tmp/x; '\'''"
        );
    }
}
