//! What `plan` and `deploy` share: the function's code packaged, the account read, and the
//! diff between the two.

use crate::cmd::cmd;
use crate::code;
use crate::flags::CodeArgs;
use crate::progress::Progress;
use crate::smoke::Smoke;
use crate::stack::StackContext;
use anyhow::Result;
use infra::desired::Desired;
use infra::plan::Plan;
use infra::secret::SecretInput;
use std::sync::Arc;

/// Packages the code, reads the account and diffs: shared by plan and deploy.
pub async fn compute(
    ctx: &StackContext,
    code: &CodeArgs,
    secret: SecretInput,
    smoke_test: bool,
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
    let mut desired =
        Desired::new(ctx.config.clone(), artifact.as_ref(), secret)?.with_commit(commit().await);
    if let Some(image) = image {
        desired = desired.with_image(image);
    }
    if smoke_test {
        let token = desired
            .spec
            .as_ref()
            .is_some_and(|s| s.caller_auth() == "token");
        desired = desired.with_smoke_test(Arc::new(Smoke {
            secret: token.then(|| ctx.secret_name()),
        }));
    }
    let actual = infra::actual::read_for(&ctx.aws, &desired).await?;
    let plan = infra::plan::plan(&desired, &actual);
    progress.finish();
    Ok((desired, plan))
}

/// The commit the workspace is at (`git rev-parse HEAD`, `-dirty` with uncommitted
/// changes), for the description of the version a deploy publishes; `None` outside git.
async fn commit() -> Option<String> {
    let root = crate::paths::project_root();
    let head = cmd("git", ["rev-parse", "--short=12", "HEAD"])
        .dir(&root)
        .read()
        .await
        .ok()?;
    let head = head.trim().to_string();
    if head.is_empty() {
        return None;
    }
    let dirty = cmd("git", ["status", "--porcelain", "--untracked-files=no"])
        .dir(&root)
        .read()
        .await
        .map(|s| !s.trim().is_empty())
        .unwrap_or(false);
    Some(if dirty { format!("{head}-dirty") } else { head })
}
