//! `[[stacks]]` tables of a test configuration, built key by key so that a
//! test shows only what its stacks are about, and the hook tokens and URLs
//! of numbered stacks.
//!
//! In the TOML, `@STANDIN@` stands for the stand-in deploy program,
//! `@RECORD:<label>@` for a record directory and `@DIR@` for the world's
//! directory ([`super::World::new`] fills them in).

use std::fmt;

/// The hook token of stack number `n`.
pub fn token(n: u32) -> String {
    format!("test-token-{n:04}-abcdefghijklmnopqrstuvwxyz")
}

/// `/hooks/<token>` of stack number `n`.
pub fn hook(n: u32) -> String {
    format!("/hooks/{}", token(n))
}

/// One `[[stacks]]` table: its keys in the order they were given, its
/// `env` inline table, and any sub-tables (`[stacks.github]`,
/// `[[stacks.services]]`, ...) after them.
#[derive(Clone, Debug)]
pub struct Stack {
    name: String,
    keys: Vec<String>,
    env: Vec<String>,
    tables: String,
}

impl Stack {
    /// A stack named `name`, with no other key yet.
    pub fn new(name: &str) -> Stack {
        Stack {
            name: name.to_string(),
            keys: Vec::new(),
            env: Vec::new(),
            tables: String::new(),
        }
    }

    /// A stack `name` following `branch` of `repository`, with hook token
    /// `n`, deploying with the stand-in: the tests' usual stack.
    pub fn repo(name: &str, repository: &str, branch: &str, n: u32) -> Stack {
        Stack::new(name)
            .follows(repository, branch)
            .token(n)
            .standin()
    }

    /// A stack `name` following the image `image`, with hook token `n`,
    /// deploying with the stand-in.
    pub fn image(name: &str, image: &str, n: u32) -> Stack {
        Stack::new(name).key("image", image).token(n).standin()
    }

    /// A stack `name` following `branch` of the bare repository
    /// `@DIR@/app.git` (fed by the post-receive hook), deploying with the
    /// stand-in.
    pub fn bare_repo(name: &str, branch: &str) -> Stack {
        Stack::new(name).follows("@DIR@/app.git", branch).standin()
    }

    /// A stack `name` following the image `acme/<name>` with hook token
    /// `n`, deploying by a POST to `url` carrying the header `(key, value)`.
    pub fn http_action(name: &str, n: u32, url: &str, (key, value): (&str, &str)) -> Stack {
        let action = format!("http = {{ url = {url:?}, headers = {{ {key} = {value:?} }} }}");
        let stack = Stack::new(name).key("image", &format!("acme/{name}"));
        stack.token(n).line(&action)
    }

    /// `repository` and `branch`.
    pub fn follows(self, repository: &str, branch: &str) -> Stack {
        self.key("repository", repository).key("branch", branch)
    }

    /// A key with a string value.
    pub fn key(self, key: &str, value: &str) -> Stack {
        self.line(&format!("{key} = {value:?}"))
    }

    /// A raw TOML line (`manual = "refuse"`, `command = ["true"]`, ...).
    pub fn line(mut self, line: &str) -> Stack {
        self.keys.push(line.to_string());
        self
    }

    /// `secrets = [secret]`.
    pub fn secret(self, secret: &str) -> Stack {
        self.line(&format!("secrets = [{secret:?}]"))
    }

    /// `hook_token` of stack number `n` ([`token`]).
    pub fn token(self, n: u32) -> Stack {
        self.key("hook_token", &token(n))
    }

    /// Deploys with the stand-in deploy program, recording into the record
    /// directory named after the stack.
    pub fn standin(self) -> Stack {
        let record = format!("@RECORD:{}@", self.name);
        self.line("command = [\"@STANDIN@\"]")
            .env("RECORD_DIR", &record)
    }

    /// `timeout`.
    pub fn timeout(self, timeout: &str) -> Stack {
        self.key("timeout", timeout)
    }

    /// One variable of the deploy command's `env`.
    pub fn env(mut self, key: &str, value: &str) -> Stack {
        self.env.push(format!("{key} = {value:?}"));
        self
    }

    /// A sub-table after the stack's keys (its header included).
    pub fn table(mut self, toml: &str) -> Stack {
        self.tables.push('\n');
        self.tables.push_str(toml.trim());
        self.tables.push('\n');
        self
    }

    /// `[stacks.github]` of a GitHub CD stack deploying to `environment` of
    /// acme/web through the API at `api_url`, its token in `@DIR@/gh-token`;
    /// `extra` lines go at its end.
    pub fn github(self, api_url: &str, environment: &str, extra: &str) -> Stack {
        self.table(&format!(
            "[stacks.github]\nrepository = \"acme/web\"\napi_url = {api_url:?}\n\
             token_file = \"@DIR@/gh-token\"\nenvironment = {environment:?}\n{extra}"
        ))
    }

    /// The stack's TOML.
    pub fn toml(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\n[[stacks]]\nname = {:?}", self.name)?;
        for key in &self.keys {
            writeln!(f, "{key}")?;
        }
        if !self.env.is_empty() {
            writeln!(f, "env = {{ {} }}", self.env.join(", "))?;
        }
        f.write_str(&self.tables)
    }
}

/// The TOML of several stacks.
pub fn toml(stacks: &[Stack]) -> String {
    stacks.iter().map(Stack::toml).collect()
}
