//! `cargo xtask plan`: desired state (stack.toml + flags + the package) against what the
//! account holds; prints the diff and changes nothing. Exit 0: no changes, 2: changes.

use crate::flags::{self, CodeArgs, Common, OutputFormat};
use crate::package;
use crate::progress::Progress;
use crate::stack::StackContext;
use anyhow::Result;
use infra::desired::Desired;
use infra::plan::Plan;
use infra::secret::{ApiKey, SecretInput};
use std::process::ExitCode;

/// `plan` exits with this when there are changes.
pub const EXIT_CHANGES: u8 = 2;

impl flags::Plan {
    pub async fn run(self, common: &Common, progress: &Progress) -> Result<ExitCode> {
        let ctx = StackContext::with_stack_args(common, &self.stack).await?;
        // The key is only compared by presence (never printed); it matters for a new secret.
        let secret = SecretInput {
            anthropic_api_key: api_key_from_env(),
            rotate_token: false,
        };
        let (_desired, plan) = compute(&ctx, &self.code, secret, progress).await?;
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

/// `ANTHROPIC_API_KEY` when set and not empty.
pub fn api_key_from_env() -> Option<ApiKey> {
    std::env::var("ANTHROPIC_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .map(ApiKey::new)
}

/// Packages the code, reads the account and diffs: shared by plan and deploy.
pub async fn compute(
    ctx: &StackContext,
    code: &CodeArgs,
    secret: SecretInput,
    progress: &Progress,
) -> Result<(Desired, Plan)> {
    let arch = ctx.config.function.architecture;
    if code.builder == crate::flags::Builder::Docker
        && ctx.config.function.package != infra::config::Package::Image
    {
        anyhow::bail!(
            "--builder applies to package = \"image\" only (this stack deploys a {})",
            ctx.config.function.package
        );
    }
    // zip and layer deploy the zip holding `bootstrap`; image, an OCI image of the static one.
    let (artifact, image) = match ctx.config.function.package {
        infra::config::Package::Image => (None, Some(package::image(code, arch, progress).await?)),
        _ => (Some(package::artifact(code, arch, progress).await?), None),
    };
    progress.step(format!(
        "reading stack `{}` from {}",
        ctx.stack,
        ctx.where_()
    ));
    let mut desired = Desired::new(ctx.config.clone(), artifact.as_ref(), secret)?;
    if let Some(image) = image {
        desired = desired.with_image(image);
    }
    let actual = infra::actual::read_for(&ctx.aws, &desired).await?;
    let plan = infra::plan::plan(&desired, &actual);
    progress.finish();
    Ok((desired, plan))
}
