//! Fuzzes config parsing and validation (TOML text to `Config`) with a
//! stand-in secret source; see `redeploy_fuzz::config` for the checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A config file that is not UTF-8 is refused when it is read.
    if let Ok(text) = std::str::from_utf8(data) {
        redeploy_fuzz::config::check_config(text);
    }
});
