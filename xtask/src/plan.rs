//! `cargo xtask plan`: desired state (stack.toml + flags + the package) against what the
//! account holds; prints the diff and changes nothing. Exit 0: no changes, 2: changes.

use crate::flags::{self, Common, OutputFormat, EXIT_CHANGES};
use crate::planning::compute;
use crate::progress::Progress;
use crate::prompt::api_key_from_env;
use crate::stack::StackContext;
use anyhow::Result;
use infra::secret::SecretInput;
use std::process::ExitCode;

impl flags::Plan {
    pub async fn run(self, common: &Common, progress: &Progress) -> Result<ExitCode> {
        let ctx = StackContext::with_stack_args(common, &self.stack).await?;
        // The key is only compared by presence (never printed); it matters for a new secret.
        let secret = SecretInput {
            anthropic_api_key: api_key_from_env(),
            rotate_token: false,
        };
        let (_desired, plan) = compute(&ctx, &self.code, secret, false, progress).await?;
        progress.finish();
        match common.output {
            OutputFormat::Text => print!("{plan}"),
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        }
        Ok(if plan.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_CHANGES)
        })
    }
}
