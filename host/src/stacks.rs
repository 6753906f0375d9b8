//! The validated configuration's stacks as the plugin's WIT records.

use crate::config::{Config, ManualSetting, PingSetting, StackConfig};
use crate::plugin::{wit, PluginRuntime};

/// A stack's `repository` setting as the component compares it: the
/// absolute path of a local repository resolved through symbolic links
/// (when it exists), so a stack naming `/srv/git/app.git` matches a push
/// the hook reports from its real path (`/var/lib/git/app.git`, say), and
/// the other way round; any other setting as written.
pub fn resolved_repository(setting: &Option<String>) -> Option<String> {
    let setting = setting.as_ref()?;
    if !setting.starts_with('/') {
        return Some(setting.clone());
    }
    Some(
        std::fs::canonicalize(setting)
            .ok()
            .and_then(|p| p.to_str().map(str::to_string))
            .unwrap_or_else(|| setting.clone()),
    )
}

/// One stack as the plugin sees it: patterns, secrets, ping and GitHub
/// settings. Deploy actions, timeouts and tokens stay in the host.
pub fn wit_stack(stack: &StackConfig) -> wit::Stack {
    wit::Stack {
        name: stack.name.clone(),
        repository: resolved_repository(&stack.repository),
        branch: stack.branch.clone(),
        tags: stack.tags.clone(),
        image: stack.image.clone(),
        services: stack
            .services
            .iter()
            .map(|s| wit::Service {
                name: s.name.clone(),
                repository: resolved_repository(&s.repository),
                branch: s.branch.clone(),
                tags: s.tags.clone(),
                image: s.image.clone(),
            })
            .collect(),
        secrets: stack
            .secrets
            .iter()
            .map(|s| s.expose().to_string())
            .collect(),
        ping: match stack.ping {
            PingSetting::Deploy => wit::PingAction::Deploy,
            PingSetting::Acknowledge => wit::PingAction::Acknowledge,
        },
        paths: stack.paths.clone(),
        skip_markers: stack.skip_markers.clone(),
        profiles: stack.profiles.keys().cloned().collect(),
        unselectable_profiles: stack
            .profiles
            .iter()
            .filter(|(_, p)| !p.selectable)
            .map(|(name, _)| name.clone())
            .collect(),
        unselectable_services: stack
            .services
            .iter()
            .filter(|s| !s.selectable)
            .map(|s| s.name.clone())
            .collect(),
        refuse_query_services: !stack.query_services,
        manual: match stack.manual {
            ManualSetting::Allow => wit::ManualPolicy::Allow,
            ManualSetting::Signed => wit::ManualPolicy::Signed,
            ManualSetting::Refuse => wit::ManualPolicy::Refuse,
        },
        github: stack.github.as_ref().map(|g| wit::GithubDeployments {
            repository: g.repository.clone(),
            environment: g.environment.clone(),
            auto_merge: g.auto_merge,
            accept_foreign_deployments: g.accept_foreign_deployments,
            required_contexts: g.required_contexts.clone(),
            transient_environment: g.transient_environment,
            production_environment: g.production_environment,
            wait_for_event: g.wait_for_event,
        }),
    }
}

/// Checks a configuration's stacks (as [`wit_stacks`] gives them) by the
/// component's rules (`validate-stacks`): patterns, repositories, images and
/// which sources a stack or service sets are the component's to judge, so
/// the configuration accepts exactly the stacks a delivery can be evaluated
/// against. The error names the file, as the configuration loader's do.
pub fn validate(
    runtime: &PluginRuntime,
    stacks: &[wit::Stack],
    config_path: &std::path::Path,
) -> anyhow::Result<()> {
    match runtime.validate_stacks(stacks)? {
        Ok(()) => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "{}: {}",
            config_path.display(),
            e.message()
        )),
    }
}

/// Every stack of the configuration, in order.
pub fn wit_stacks(config: &Config) -> Vec<wit::Stack> {
    config.stacks.iter().map(wit_stack).collect()
}

/// The name of the server key (in the journal's `server_keys`) that signs
/// the GitHub deployments redeploy creates.
pub const DEPLOYMENT_KEY_NAME: &str = "github-deployment";

/// What the component needs besides the stacks and the delivery: the time
/// now, the server's deployment key (when the host has one) and
/// `server.max_event_age`.
pub fn evaluation_context(config: &Config, deployment_key: Option<&str>) -> wit::EvaluationContext {
    wit::EvaluationContext {
        now_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok()),
        deployment_key: deployment_key.map(str::to_string),
        max_event_age_ms: u64::try_from(config.server.max_event_age.as_millis())
            .unwrap_or(u64::MAX),
        // Computed by `PluginRuntime::evaluate` for the delivery at hand.
        body_macs: None,
    }
}

/// What a dry run evaluates with (`redeploy check`, the dashboard's "check
/// again"): it judges a saved delivery, so no time (nothing is refused for
/// its age) and no deployment key (a deploy it names is not run).
pub fn dry_run_context(config: &Config) -> wit::EvaluationContext {
    wit::EvaluationContext {
        now_ms: None,
        ..evaluation_context(config, None)
    }
}

/// The server's deployment key, created in the journal on first use (like
/// the log-link key), so every process on a state directory shares it.
pub fn deployment_key(journal: &crate::journal::Journal) -> anyhow::Result<String> {
    let candidate = crate::tokens::generate_token()?;
    Ok(journal.ensure_server_key(DEPLOYMENT_KEY_NAME, &candidate)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::embedded_for_tests as runtime;
    use std::path::Path;

    /// Loads `body` as the stack "web" (with a command) and checks it with
    /// the component: the error text, or `None` when it is accepted.
    fn verdict(body: &str) -> Option<String> {
        let text = format!("[[stacks]]\nname = \"web\"\ncommand = [\"x\"]\n{body}\n");
        let config = crate::config::parse(&text, Path::new("/etc/redeploy"))
            .unwrap_or_else(|e| panic!("the host's own rules refused {body:?}: {e}"));
        validate(
            runtime(),
            &wit_stacks(&config),
            Path::new("/etc/redeploy/redeploy.toml"),
        )
        .err()
        .map(|e| e.to_string())
    }

    fn refused(body: &str, expected: &str) {
        match verdict(body) {
            Some(message) => assert_eq!(
                message,
                format!("/etc/redeploy/redeploy.toml: {expected}"),
                "for {body:?}"
            ),
            None => panic!("accepted {body:?}, expected: {expected}"),
        }
    }

    fn accepted(body: &str) {
        if let Some(message) = verdict(body) {
            panic!("refused {body:?}: {message}");
        }
    }

    #[test]
    fn which_sources_a_stack_sets_is_the_components_rule() {
        refused(
            "repository = \"o/r\"",
            "stack \"web\": repository needs a branch (or tags) pattern",
        );
        refused("", "stack \"web\": set repository or image");
        refused(
            "image = \"i\"\nbranch = \"main\"",
            "stack \"web\": branch needs repository",
        );
        refused(
            "repository = \"o/r\"\n[[stacks.services]]\nname = \"api\"\nimage = \"a\"",
            "stack \"web\": set repository/branch/image either at the top level or in services, not both",
        );
        refused(
            "[[stacks.services]]\nname = \"api\"\nrepository = \"o/r\"",
            "stack \"web\" service \"api\": repository needs a branch (or tags) pattern",
        );
        refused(
            "[[stacks.services]]\nname = \"api\"",
            "stack \"web\" service \"api\": set repository or image",
        );
        accepted("repository = \"/srv/git/app.git\"\ntags = \"v*\"");
        accepted("image = \"acme/web:latest\"");
        accepted("repository = \"git@github.com:o/r.git\"\nbranch = \"release/*\"");
        accepted("[[stacks.services]]\nname = \"api\"\nimage = \"a\"\n[[stacks.services]]\nname = \"web\"\nrepository = \"o/r\"\nbranch = \"main\"");
    }

    /// Found by the `config` fuzz target, three times: the host's copies of
    /// these rules accepted what the component refused, so every delivery
    /// then failed as an invalid stack. Now there is one copy.
    #[test]
    fn patterns_are_globs_the_component_compiles() {
        refused(
            "image = \"i\"\npaths = [\"src/**\", \"src/**9\"]",
            "stack \"web\": paths \"src/**9\" is not a valid glob: recursive wildcards must form a single path component",
        );
        refused(
            "image = \"i\"\npaths = [\"src/**\", \"\"]",
            "stack \"web\": paths is empty",
        );
        refused(
            "repository = \"o/r\"\nbranch = \"release/[\"",
            "stack \"web\": branch pattern \"release/[\" is not a valid glob: invalid range pattern",
        );
        refused(
            "repository = \"o/r\"\ntags = \" \"",
            "stack \"web\": tags pattern is empty",
        );
        refused(
            "repository = \"o/r\"\nbranch = \"\"",
            "stack \"web\": branch pattern is empty",
        );
        refused(
            "[[stacks.services]]\nname = \"a\"\nrepository = \"o/r\"\nbranch = \"a**\"",
            "stack \"web\" service \"a\": branch pattern \"a**\" is not a valid glob: recursive wildcards must form a single path component",
        );
        accepted("repository = \"o/r\"\nbranch = \"release/*\"\ntags = \"v[0-9]*\"\npaths = [\"src/**\", \"docs/\"]");
    }

    #[test]
    fn repositories_are_what_the_component_parses() {
        for bad in ["not a repo", "name", "https://github.com/.git"] {
            let message = verdict(&format!("repository = {bad:?}\nbranch = \"main\"")).unwrap();
            assert!(
                message.ends_with(&format!(
                    "stack \"web\": repository {bad:?} is not a repository: write owner/name, a clone URL or an absolute path"
                )),
                "{message}"
            );
        }
        // A Bitbucket Server personal repository: its project key is `~user`.
        accepted("repository = \"~gopher/webhook-test\"\nbranch = \"main\"");
        accepted("repository = \"https://bitbucket.example.com/scm/~gopher/webhook-test.git\"\nbranch = \"main\"");
        accepted("repository = \"group/subgroup/project\"\nbranch = \"main\"");
        accepted("repository = \"git@gitolite.example.com:testing\"\nbranch = \"main\"");
    }

    #[test]
    fn images_are_references_the_component_parses() {
        for bad in [
            "@sha256:0123",
            "ghcr.io/:latest",
            "acme/web@",
            "acme/web:",
            "acme web",
            "acme//web",
            "acme/web/",
            "-acme/web",
            "acme/web:.1",
            "my_registry.io:x/acme/web",
            " as.[secmelll//////////////////zzzlll#l/web:latesQnab@",
        ] {
            let message =
                verdict(&format!("image = {bad:?}")).unwrap_or_else(|| panic!("accepted {bad:?}"));
            assert!(
                message.ends_with(&format!(
                    "stack \"web\": image {bad:?} is not an image reference: write name, owner/name or registry/path, with an optional :tag and @digest"
                )),
                "{message}"
            );
        }
        for good in [
            "nginx",
            "library/nginx:1.27-alpine",
            "Acme/Web",
            "localhost:5000/acme/web:1@sha256:0123",
            "registry.example.com:5000/team/app__x/web-api:v1.2.3_rc",
            "[::1]:5000/acme/web",
            "ghcr.io/acme/web@sha256:6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b",
        ] {
            accepted(&format!("image = {good:?}"));
        }
    }
}
