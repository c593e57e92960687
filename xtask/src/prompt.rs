//! What the commands ask of the person at the terminal: a yes/no confirmation and the
//! Anthropic API key (from the environment or stdin, never from argv).

use crate::flags::Common;
use anyhow::{bail, Context, Result};
use infra::secret::ApiKey;
use std::io::{IsTerminal, Read, Write};

/// Asks y/N on a terminal; `--yes` skips the question; without a terminal `--yes` is required.
pub fn confirm(common: &Common, question: &str) -> Result<()> {
    if common.yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("stdin is not a terminal, so there is no one to confirm: pass --yes to go ahead without asking");
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin.read_line(&mut answer).context("reading the answer")?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => bail!("cancelled: nothing was changed"),
    }
}

/// `ANTHROPIC_API_KEY` when set and not empty.
pub fn api_key_from_env() -> Option<ApiKey> {
    std::env::var("ANTHROPIC_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .map(ApiKey::new)
}

/// The Anthropic key: `--api-key-stdin` or `ANTHROPIC_API_KEY` (never from argv).
pub fn api_key(from_stdin: bool) -> Result<Option<ApiKey>> {
    if !from_stdin {
        return Ok(api_key_from_env());
    }
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Anthropic API key (input is not hidden; pipe it to avoid echo): ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        stdin
            .read_line(&mut line)
            .context("reading the Anthropic API key from stdin")?;
        return non_empty(line);
    }
    let mut all = String::new();
    stdin
        .read_to_string(&mut all)
        .context("reading the Anthropic API key from stdin")?;
    non_empty(all)
}

fn non_empty(key: String) -> Result<Option<ApiKey>> {
    let key = key.trim();
    if key.is_empty() {
        bail!("--api-key-stdin: stdin was empty; pipe the key in, e.g. `printf %s \"$KEY\" | cargo xtask deploy --api-key-stdin --yes`");
    }
    Ok(Some(ApiKey::new(key)))
}
