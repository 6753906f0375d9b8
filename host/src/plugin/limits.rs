//! A store's limits, and the evaluation its memory cap stopped.

use wasmtime::StoreLimits;

/// An evaluation stopped because its linear memory could not grow past its
/// cap ([`super::RuntimeOptions::memory_limit`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "evaluating the delivery needed more than the plugin's {} MiB of memory (it asked for {} bytes)",
    .limit / (1024 * 1024),
    .desired
)]
pub struct OverMemoryLimit {
    /// The cap, in bytes.
    pub limit: usize,
    /// The size the memory was to grow to.
    pub desired: usize,
}

/// A store's limits ([`StoreLimits`]), noting a growth of memory they
/// refused, so that an evaluation stopped by its memory cap is told apart
/// from other traps ([`OverMemoryLimit`]).
pub(super) struct Limits {
    pub(super) inner: StoreLimits,
    /// The size memory was refused growing to, if it was.
    pub(super) refused: Option<usize>,
}

impl wasmtime::ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grows = self.inner.memory_growing(current, desired, maximum);
        if !matches!(grows, Ok(true)) {
            self.refused = Some(desired);
        }
        grows
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}
