//! A configuration that a running server can replace (`SIGHUP`, `redeploy
//! reload`): [`Live`], the shared handle every part reads its current
//! snapshot from, and [`merge_reload`], the pure rule for what of a new
//! file applies at once and what waits for a restart.

use std::sync::{Arc, PoisonError, RwLock};

use super::{Config, ServerConfig};

/// A value shared by the parts of a running server and replaced whole on
/// reload. Readers take a snapshot ([`Live::current`]) and use it for one
/// piece of work (a delivery, a deploy), so no piece of work sees half of
/// an old configuration and half of a new one. Cheap to clone.
#[derive(Debug)]
pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T> Live<T> {
    /// A handle holding `value`.
    pub fn new(value: Arc<T>) -> Self {
        Live(Arc::new(RwLock::new(value)))
    }

    /// The value now.
    pub fn current(&self) -> Arc<T> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the value for every later [`Live::current`].
    pub fn replace(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = value;
    }
}

impl<T> From<Arc<T>> for Live<T> {
    fn from(value: Arc<T>) -> Self {
        Live::new(value)
    }
}

/// The configuration of a running server.
pub type LiveConfig = Live<Config>;

/// Gives one `[server]` setting of a new configuration its running value;
/// true if the new file had changed it.
type Keep = fn(new: &mut ServerConfig, running: &ServerConfig) -> bool;

/// Sets `new` to `running`; true if they differed.
fn keep<T: PartialEq + Clone>(new: &mut T, running: &T) -> bool {
    let changed = new != running;
    new.clone_from(running);
    changed
}

/// The `[server]` settings read once, when `serve` starts (the socket, the
/// state directory, the log links' base and lifetime, and the
/// refused-delivery limiter), by their `redeploy.toml` names.
const RESTART_ONLY: &[(&str, Keep)] = &[
    ("server.listen", |n, r| keep(&mut n.listen, &r.listen)),
    ("server.state_dir", |n, r| {
        keep(&mut n.state_dir, &r.state_dir)
    }),
    ("server.public_url", |n, r| {
        keep(&mut n.public_url, &r.public_url)
    }),
    ("server.log_links", |n, r| {
        keep(&mut n.log_links, &r.log_links)
    }),
    ("server.max_refused_deliveries_per_minute", |n, r| {
        keep(
            &mut n.retention.refused_per_minute,
            &r.retention.refused_per_minute,
        )
    }),
];

/// What a reload applies: the new configuration, except that the settings
/// read only at start keep their running values, and the names of those
/// the new file changed (a restart applies them).
#[derive(Debug)]
pub struct Reloaded {
    /// The configuration to run with from now on.
    pub config: Config,
    /// The restart-only settings the new file changed, as written in
    /// `redeploy.toml`; empty when everything in it applies now.
    pub need_restart: Vec<&'static str>,
}

/// Merges a newly loaded `new` configuration into the `running` one: the
/// stacks, secrets, commands and every limit read per delivery or per
/// deploy come from `new`; the [`RESTART_ONLY`] settings stay as running.
pub fn merge_reload(running: &Config, new: Config) -> Reloaded {
    let mut config = new;
    let mut need_restart = Vec::new();
    for (name, keep) in RESTART_ONLY {
        if keep(&mut config.server, &running.server) {
            need_restart.push(*name);
        }
    }
    // The journal is opened once, at start.
    if config.journal != running.journal {
        config.journal = running.journal.clone();
        need_restart.push("journal");
    }
    // So is the dashboard's own socket. The new value stays: while the hook
    // port serves the dashboard, a `listen` asked for turns it off there
    // (`ui::gate`) until a restart opens the socket.
    let listen = |c: &Config| c.ui.as_ref().and_then(|ui| ui.listen);
    if config.ui.is_some() && listen(&config) != listen(running) {
        need_restart.push("ui.listen");
    }
    Reloaded {
        config,
        need_restart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        super::super::parse(text, std::path::Path::new("/srv")).unwrap()
    }

    const STACK: &str = "[[stacks]]\nname = \"api\"\nrepository = \"acme/api\"\nbranch = \"main\"\ncommand = [\"true\"]\n";

    #[test]
    fn a_reload_that_moves_the_dashboard_needs_a_restart() {
        let ui = |listen: &str| {
            format!("{STACK}[ui]\ntrusted_user_header = \"x-user\"\ntrusted_proxies = [\"127.0.0.1\"]\n{listen}")
        };
        let running = parse(&ui(""));
        let r = merge_reload(&running, parse(&ui("listen = \"127.0.0.1:9091\"")));
        assert_eq!(r.need_restart, ["ui.listen"]);
        // Kept as asked: the hook port's gate turns the dashboard off there.
        assert!(r.config.ui.unwrap().listen.is_some());
        let r = merge_reload(&running, parse(&ui("")));
        assert!(r.need_restart.is_empty());
    }

    #[test]
    fn a_reload_applies_stacks_and_limits_and_keeps_the_socket_and_state() {
        let running = parse(&format!(
            "[server]\nlisten = \"127.0.0.1:9000\"\nstate_dir = \"/var/lib/a\"\nmax_body_bytes = 1000\n{STACK}"
        ));
        let new = parse(&format!(
            "[server]\nlisten = \"127.0.0.1:9001\"\nstate_dir = \"/var/lib/b\"\nmax_body_bytes = 2000\nmax_concurrent_deploys = 9\n{STACK}{}",
            STACK.replace("api", "web")
        ));
        let r = merge_reload(&running, new);
        assert_eq!(r.need_restart, ["server.listen", "server.state_dir"]);
        assert_eq!(r.config.server.listen, running.server.listen);
        assert_eq!(r.config.server.state_dir, running.server.state_dir);
        assert_eq!(r.config.server.max_concurrent_deploys, 9);
        assert_eq!(r.config.server.max_body_bytes, 2000);
        let names: Vec<_> = r.config.stacks.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
    }

    #[test]
    fn an_unchanged_file_needs_no_restart() {
        let text = format!("[server]\nstate_dir = \"/var/lib/a\"\n{STACK}");
        let r = merge_reload(&parse(&text), parse(&text));
        assert!(r.need_restart.is_empty());
    }

    #[test]
    fn a_live_handle_hands_out_the_replaced_value() {
        let live = Live::new(Arc::new(1));
        let other = live.clone();
        let before = live.current();
        other.replace(Arc::new(2));
        assert_eq!((*before, *live.current()), (1, 2));
    }
}
