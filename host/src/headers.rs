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

/// Reads and parses a headers file.
pub fn read_headers(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading headers file {}", path.display()))?;
    parse_headers(&text).with_context(|| format!("headers file {}", path.display()))
}
