//! redeploy's plugin: all redeploy logic, pure, compiled to a WebAssembly
//! component that imports nothing.
//!
//! Start at [`evaluate::evaluate`]: a delivery (HTTP request, post-receive
//! lines or manual trigger) and the stacks go in; the provider, the normalized
//! pushes and one decision per stack (per ref it follows of several) come out. The modules:
//! - [`providers`]: one `Sender` per provider (detection, proof, parsing), listed in one registry;
//! - [`signature`]: HMAC and token verification;
//! - [`forwarding`]: post-receive pushes a hook forwards to a server, signed and checked;
//! - [`matching`]: branch/tag globs, repository and image identities;
//! - [`github`]: GitHub Deployments API request bodies;
//! - [`report`]: the stable JSON form of an outcome;
//! - `component` (wasm32 only): the WIT bindings, converting WIT types to domain types and back.
//! - `allocator` (wasm32 only): the component's allocator, a bump allocator over an arena in its initial memory, then talc;
//! - `bump`: the arena's bookkeeping, pure, tested natively.

// The component's logic has no use for `unsafe` (only the generated WIT
// bindings in `component` and the allocator's arena in `allocator` need
// it), and a panic in it is a trap the host answers with 500: outside
// tests, fallible steps return `PluginError`.
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod error;
pub mod evaluate;
pub mod forwarding;
pub mod github;
pub mod json_api;
pub mod matching;
pub mod model;
pub mod outcome;
pub mod providers;
pub mod report;
pub mod signature;

// The bindings only exist in the component: a native cdylib cannot export
// symbols whose names contain `:` (the linker's version script rejects them),
// and native callers use the modules above directly.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod component;

// The component's allocator: a bump allocator over an arena in its initial
// memory, so a typical delivery never grows memory, then talc over grown
// pages.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod allocator;
#[cfg(any(target_arch = "wasm32", test))]
mod bump;
