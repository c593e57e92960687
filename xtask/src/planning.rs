//! What `plan` and `deploy` share: the function's code packaged, the account read, and the
//! diff between the two.

use crate::code;
use crate::flags::CodeArgs;
use crate::progress::Progress;
use crate::stack::StackContext;
use anyhow::Result;
use infra::desired::Desired;
use infra::plan::Plan;
use infra::secret::SecretInput;

/// Packages the code, reads the account and diffs: shared by plan and deploy.
pub async fn compute(
    ctx: &StackContext,
    code: &CodeArgs,
    secret: SecretInput,
    progress: &Progress,
) -> Result<(Desired, Plan)> {
    let arch = ctx.config.function.architecture;
    // zip and layer deploy the zip holding `bootstrap`; image, an OCI image of the static one.
    let (artifact, image) = match ctx.config.function.package {
        infra::config::Package::Image => (None, Some(code::image(code, arch, progress).await?)),
        _ => (Some(code::artifact(code, arch, progress).await?), None),
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
