//! Loading the embedded component through the compiled-component cache
//! ([`cache`]) of a state directory: [`PluginRuntime::cached`], which
//! writes it, and [`PluginRuntime::cached_read_only`], which only reads it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wasmtime::component::Component;
use wasmtime::Engine;

use super::{
    cache, engine_config, precompile, PluginRuntime, RuntimeOptions, EMBEDDED_COMPONENT,
    EMBEDDED_COMPONENT_SHA256,
};

/// The cache file of the embedded component compiled for `engine`, in
/// `cache_dir`: named by the component's SHA-256 and the engine's
/// compatibility hash (wasmtime's version and settings).
fn artifact_path(cache_dir: &Path, engine: &Engine) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    cache_dir.join(format!(
        "plugin-{}-{:016x}.cwasm",
        &EMBEDDED_COMPONENT_SHA256[..32],
        hasher.finish()
    ))
}

/// The key that tags `cache_dir`'s artifacts: in the state directory
/// (`cache_dir`'s parent), beside the cache.
fn cache_key_path(cache_dir: &Path) -> PathBuf {
    cache_dir
        .parent()
        .unwrap_or(Path::new("."))
        .join(cache::CACHE_KEY_FILE)
}

/// The cached artifact at `path`, mapped from its file, if it verifies
/// ([`cache::verify`]); `Ok(None)` if there is none.
fn map_verified(
    engine: &Engine,
    path: &Path,
    key: &cache::CacheKey,
) -> anyhow::Result<Option<Component>> {
    let Some(verified) = cache::verify(path, key)? else {
        return Ok(None);
    };
    let component = match verified.mapping_path() {
        // SAFETY: the file's tag, made with a key only this user can read,
        // verifies, so this program wrote it for an engine like this one
        // (wasmtime checks the compatibility hash); the path opens the
        // descriptor that was checked, and `unchanged` below refuses a file
        // written since. The tag after the code is past the artifact's last
        // section, which wasmtime does not read.
        Some(mapping) => unsafe { Component::deserialize_file(engine, &mapping) },
        // Without /proc: the checked file read again through its
        // descriptor, and copied in.
        None => {
            let code = verified
                .read_code()
                .with_context(|| format!("reading {}", path.display()))?;
            // SAFETY: as above.
            unsafe { Component::deserialize(engine, code) }
        }
    }
    .map_err(anyhow::Error::from)
    .with_context(|| format!("{} did not deserialize", path.display()))?;
    verified.unchanged()?;
    Ok(Some(component))
}

/// Set once this process has warned that the compiled-component cache
/// cannot be written: one line per process, however often it loads.
static CACHE_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reports a compiled-component cache that cannot be written (so every
/// start compiles the component again, about two seconds of one core): counted
/// in `redeploy_component_cache_unwritable_total`, and one warning line per
/// process. A process without a log subscriber (the git hook, one-shot
/// commands) prints the line on stderr, which git shows the pusher, so it
/// is never silent.
fn cache_unwritable(reason: &str) {
    crate::metrics::process::component_cache_unwritable();
    if CACHE_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::debug!(reason = %reason, "compiled-component cache still not written");
        return;
    }
    if tracing::dispatcher::has_been_set() {
        tracing::warn!(reason = %reason, "compiled-component cache not written; every start compiles the component again");
    } else {
        crate::cli::say(format_args!(
            "redeploy: warning: compiled-component cache not written ({}); every run compiles the component again",
            crate::text::one_line(reason)
        ));
    }
}

impl PluginRuntime {
    /// Loads the embedded component through an on-disk cache of its
    /// compiled form, for processes that must not pay for compiling it on
    /// every start (the post-receive hook, and `serve` across restarts).
    ///
    /// The cache file is keyed by the component's SHA-256 and the engine's
    /// compatibility hash (wasmtime version and settings), so a different
    /// wasmtime or a changed component never loads a stale artifact. A
    /// compiled artifact is native code, so it is loaded only from a `0700`
    /// directory of ours, from a file of ours that group and others cannot
    /// write, and only when its keyed tag verifies with the key in
    /// `<state_dir>/cache.key` (see [`cache`]); anything else is ignored with
    /// a warning and compiled again (where [`RuntimeOptions::compile`]
    /// says). It is written to a unique temporary file and renamed into
    /// place, so two racing processes each see either no file or a whole
    /// one, and loaded by mapping the file, checked and then mapped
    /// ([`cache::Verified::unchanged`]), so only the pages that run are
    /// resident.
    pub fn cached(cache_dir: &Path, options: RuntimeOptions) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(options.allocation, options.memory_limit))?;
        let path = artifact_path(cache_dir, &engine);
        let key_path = cache_key_path(cache_dir);
        // A state directory of another user's gets nothing created in it
        // (a cache directory or key its owner could not use); the command
        // is refused by the journal's own check of the same directory.
        let state_dir = cache_dir.parent().unwrap_or(Path::new("."));
        let key = crate::ownership::check_state_dir(state_dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| cache::ensure_private_dir(cache_dir))
            .and_then(|()| cache::load_or_create_key(&key_path));
        let key = match key {
            Ok(key) => key,
            Err(e) => {
                let reason = format!("{e:#}");
                cache_unwritable(&reason);
                let compiled = precompile(&options)?;
                // SAFETY: the bytes were just compiled for this engine's settings.
                let component = unsafe { Component::deserialize(&engine, &compiled)? };
                drop(compiled);
                let mut runtime = Self::from_component(engine, component, options)?;
                runtime.cache_status = Some(cache::CacheStatus::Unusable(reason));
                return Ok(runtime);
            }
        };
        let status = match map_verified(&engine, &path, &key) {
            Ok(Some(component)) => {
                let mut runtime = Self::from_component(engine, component, options)?;
                runtime.cache_status = Some(cache::CacheStatus::Loaded);
                return Ok(runtime);
            }
            Ok(None) => cache::CacheStatus::Compiled,
            // Written in place while it was checked (only this user can):
            // compiled again below, and the file left to whoever wrote it.
            Err(e)
                if e.downcast_ref::<cache::CacheRefusal>()
                    .is_some_and(|r| matches!(r, cache::CacheRefusal::Changed { .. })) =>
            {
                cache::CacheStatus::Refused(format!("{e:#}"))
            }
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::warn!(reason = %reason, "compiled-component cache file ignored; compiling the component again");
                // A refused file is replaced below; one we cannot replace
                // (not ours) stays refused on every start.
                let _ = std::fs::remove_file(&path);
                cache::CacheStatus::Refused(reason)
            }
        };
        let compiled = precompile(&options)?;
        // The cache only saves time: a full or read-only disk costs
        // a compile per start, not the start itself.
        let written = cache::write_tagged(&path, &key, &compiled);
        let mapped = match written {
            // Loaded as a later start will load it: mapped from the file.
            Ok(()) => match map_verified(&engine, &path, &key) {
                Ok(mapped) => mapped,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "the compiled component just cached could not be mapped; loading a copy");
                    None
                }
            },
            Err(e) => {
                cache_unwritable(&format!("{e:#}"));
                None
            }
        };
        let component = match mapped {
            Some(component) => component,
            // SAFETY: the bytes were just compiled for this engine's settings.
            None => unsafe { Component::deserialize(&engine, &compiled)? },
        };
        drop(compiled);
        let mut runtime = Self::from_component(engine, component, options)?;
        runtime.cache_status = Some(status);
        Ok(runtime)
    }

    /// Loads the embedded component for a command that only reads the
    /// state directory (`check`, `config check`, `install-hook`): from the
    /// artifact [`PluginRuntime::cached`] left in `cache_dir` (a `serve` or
    /// hook of this user), with its checks (a cache directory group or
    /// others may write is refused, where `cached` would tighten it), and
    /// otherwise compiled in this process as [`PluginRuntime::new`]
    /// does, with nothing created or written (no cache yet, a state
    /// directory of another user's or one its group or others may write,
    /// a file that does not verify: `serve`
    /// warns of and replaces such a file at its next start). A compile
    /// costs seconds of CPU; a cached load, milliseconds.
    pub fn cached_read_only(cache_dir: &Path, options: RuntimeOptions) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(options.allocation, options.memory_limit))?;
        let path = artifact_path(cache_dir, &engine);
        let state_dir = cache_dir.parent().unwrap_or(Path::new("."));
        let loaded = crate::ownership::check_state_dir(state_dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| cache::check_private_dir_read_only(cache_dir))
            .and_then(|usable| match usable {
                true => cache::read_key(&cache_key_path(cache_dir)),
                false => Ok(None),
            })
            .and_then(|key| match key {
                Some(key) => map_verified(&engine, &path, &key),
                None => Ok(None),
            });
        match loaded {
            Ok(Some(component)) => {
                let mut runtime = Self::from_component(engine, component, options)?;
                runtime.cache_status = Some(cache::CacheStatus::Loaded);
                Ok(runtime)
            }
            Ok(None) => Self::compiled_here(engine, options),
            Err(e) => {
                tracing::debug!(reason = %format!("{e:#}"), "compiled-component cache not read; compiling the component");
                Self::compiled_here(engine, options)
            }
        }
    }

    /// The embedded component compiled in this process for `engine`,
    /// nothing written: the read-only load's fallback.
    fn compiled_here(engine: Engine, options: RuntimeOptions) -> anyhow::Result<Self> {
        let component = Component::new(&engine, EMBEDDED_COMPONENT)?;
        Self::from_component(engine, component, options)
    }

    /// What became of the compiled-component cache, for a runtime loaded
    /// with [`PluginRuntime::cached`], or from the cache by
    /// [`PluginRuntime::cached_read_only`] (`None` otherwise).
    pub fn cache_status(&self) -> Option<&cache::CacheStatus> {
        self.cache_status.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;

    /// Every file and directory under `dir`: path, mode, length, mtime.
    fn listing(dir: &Path) -> Vec<(PathBuf, u32, u64, i64, i64)> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    todo.push(path.clone());
                }
                out.push((
                    path,
                    meta.mode(),
                    meta.len(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                ));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_read_only_load_takes_what_cached_wrote_and_writes_nothing() {
        let state =
            std::env::temp_dir().join(format!("redeploy-read-only-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let cache_dir = state.join("cache");
        let load = || PluginRuntime::cached_read_only(&cache_dir, RuntimeOptions::default());

        // No state directory yet: compiled here, nothing created.
        let runtime = load().unwrap();
        assert!(runtime.cache_status().is_none());
        assert!(runtime.version().is_ok());
        assert!(
            !state.exists(),
            "a read-only load created {}",
            state.display()
        );

        // What `cached` wrote is loaded from the cache, and nothing changes.
        let written = PluginRuntime::cached(&cache_dir, RuntimeOptions::default()).unwrap();
        assert!(matches!(
            written.cache_status(),
            Some(cache::CacheStatus::Compiled)
        ));
        drop(written);
        let before = listing(&state);
        let runtime = load().unwrap();
        assert!(matches!(
            runtime.cache_status(),
            Some(cache::CacheStatus::Loaded)
        ));
        assert!(runtime.version().is_ok());
        assert_eq!(listing(&state), before);

        // An artifact one byte changed: compiled here, the file left as it
        // was (the next `serve` replaces it).
        let artifact = artifact_path(&cache_dir, runtime.engine());
        drop(runtime);
        let good = std::fs::read(&artifact).unwrap();
        let mut bytes = good.clone();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&artifact, &bytes).unwrap();
        let before = listing(&state);
        let runtime = load().unwrap();
        assert!(runtime.cache_status().is_none());
        assert!(runtime.version().is_ok());
        assert_eq!(listing(&state), before);
        drop(runtime);

        // A cache directory group members may write is not read from, and
        // not tightened.
        std::fs::write(&artifact, &good).unwrap();
        assert!(matches!(
            load().unwrap().cache_status(),
            Some(cache::CacheStatus::Loaded)
        ));
        std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        let before = listing(&state);
        let runtime = load().unwrap();
        assert!(runtime.cache_status().is_none());
        assert_eq!(listing(&state), before);
        assert_eq!(std::fs::metadata(&cache_dir).unwrap().mode() & 0o777, 0o770);
        std::fs::remove_dir_all(&state).unwrap();
    }
}
