//! Fuzzes git's post-receive input (`<old> <new> <ref>` lines) through the
//! host's line parser and the plugin's evaluation; see
//! `redeploy_fuzz::post_receive` for the checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The hook reads its stdin as UTF-8 text and stops at invalid UTF-8.
    if let Ok(input) = std::str::from_utf8(data) {
        redeploy_fuzz::post_receive::check_post_receive(input);
    }
});
