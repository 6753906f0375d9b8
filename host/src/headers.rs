//! Reading `Name: value` header files (the format of the fixtures'
//! `.headers` files and of `redeploy check --headers`).

use anyhow::{bail, Context as _};
use std::path::Path;

/// Parses one `Name: value` per line; blank lines and `#` comments are skipped.
pub fn parse_headers(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            bail!("line {}: expected \"Name: value\", got {:?}", i + 1, line);
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            bail!("line {}: {:?} is not a header name", i + 1, name);
        }
        out.push((name.to_string(), value.trim().to_string()));
    }
    Ok(out)
}

/// The largest headers file read (1 MiB): a real request's headers are a
/// few KiB (servers cap them at 8 to 64 KiB); a larger file is refused
/// whole, never read in part.
pub const MAX_HEADERS_FILE_BYTES: u64 = 1024 * 1024;

/// Reads and parses a headers file.
pub fn read_headers(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = crate::bounded::read_file_to_string(path, MAX_HEADERS_FILE_BYTES)
        .with_context(|| format!("reading headers file {}", path.display()))?;
    parse_headers(&text).with_context(|| format!("headers file {}", path.display()))
}
