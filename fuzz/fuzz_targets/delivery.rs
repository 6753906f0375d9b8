//! Fuzzes the evaluation of an HTTP delivery (headers plus body, every
//! provider) by the plugin crate, natively.
//!
//! The input is an HTTP-like text (see `redeploy_fuzz::delivery` for the
//! format; `fuzz/seed.sh` writes one per fixture payload):
//!
//! ```text
//! POST * services=web
//! X-GitHub-Event: push
//! X-Hub-Signature-256: sha256={sha256}
//!
//! {"ref": "refs/heads/main", ...}
//! ```
//!
//! Each input is evaluated against a fixed set of stacks that covers every
//! provider's fixtures (`*`, or the one stack the first line names), twice:
//! without secrets (so the payload parsers run whatever the signature) and
//! with secrets (so the signature paths run; the placeholders `{sha256}`,
//! `{sha256-json}`, `{sha1}` and `{secret}` in header values are replaced by
//! the right HMAC or token). Beyond "no panic", it checks that an outcome has
//! one decision per stack, in order (or one per ref its services take of
//! several, never more than its services), that a deploy names its stack and only
//! that stack's services, that secrets never change a decision (they can only
//! reject), and that `evaluate_json` agrees with `evaluate`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use redeploy_fuzz::delivery::{check_delivery, FuzzDelivery};

fuzz_target!(|data: &[u8]| {
    if let Some(delivery) = FuzzDelivery::parse(data) {
        check_delivery(&delivery);
    }
});
