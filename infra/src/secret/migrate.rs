//! The secret's move to named callers: plaintext `caller_tokens` (the format before named
//! callers) hashed into `callers` (the first named `default`), keeping every token working.
//!
//! A step of its own, `Kind::Callers`, ordered after the function: a deploy first updates the
//! function to a handler that reads both forms, then this step rewrites the secret. A crash
//! between the two leaves plaintext tokens that both handlers read; the next deploy plans this
//! step again. The step reads the secret afresh, so a token the secret step minted in the same
//! apply (a rotation on the old form) is hashed too.
//!
//! Also here: [`edit_callers`], the read-change-write of the callers for `cargo xtask callers`.

use super::{SecretValue, State};
use crate::aws::{ctx, Aws};
use crate::callers;
use crate::change::{Change, FieldChange, Kind};
use crate::names::Names;
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::{bail, Context, Result};

/// The migration, when the secret will hold plaintext tokens after the secret's own step:
/// it holds some now, or it holds no named callers (the secret step then mints a plaintext
/// token, or the value is unreadable and gets rewritten).
pub fn plan(names: &Names, deploying: bool, actual: Option<&State>) -> Option<ResourceChange> {
    let a = actual?;
    if !deploying {
        return None;
    }
    let (from, needed) = match &a.value {
        Some(v) if !v.caller_tokens.is_empty() => (
            format!("{} plaintext token(s)", v.caller_tokens.len()),
            true,
        ),
        Some(v) => ("(new token)".to_string(), v.callers.is_empty()),
        None => ("(rewritten)".to_string(), true),
    };
    if !needed {
        return None;
    }
    let change = Change::Update {
        fields: vec![FieldChange::new(
            "callers",
            from,
            "hashed, named default, default-2, ... (after the function is updated)",
        )],
    };
    Some(ResourceChange::new(
        Kind::Callers,
        &names.secret,
        change,
        Migrate(names.secret.clone()),
    ))
}

/// Hashes the plaintext tokens of the secret (by name).
#[derive(Debug)]
pub struct Migrate(pub String);

impl Step for Migrate {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            migrate(cx.aws, &self.0).await?;
            Done::nothing()
        })
    }
}

/// Reads the secret's value, strictly (an unreadable value is an error naming the secret).
pub async fn read_value(aws: &Aws, secret: &str) -> Result<SecretValue> {
    let out = aws
        .secrets
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(ctx(format!("secretsmanager:GetSecretValue {secret}")))?;
    let text = out
        .secret_string()
        .with_context(|| format!("secret {secret} has no SecretString"))?;
    serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "secret {secret} is not the JSON document the stack writes (line {} column {})",
            e.line(),
            e.column()
        )
    })
}

async fn write_value(aws: &Aws, secret: &str, value: &SecretValue) -> Result<()> {
    aws.secrets
        .put_secret_value()
        .secret_id(secret)
        .secret_string(serde_json::to_string(value)?)
        .send()
        .await
        .map_err(ctx(format!("secretsmanager:PutSecretValue {secret}")))?;
    Ok(())
}

/// Hashes the plaintext tokens into named callers; returns how many. Nothing is written when
/// there are none.
pub async fn migrate(aws: &Aws, secret: &str) -> Result<usize> {
    let mut value = read_value(aws, secret).await?;
    let n = callers::hash_plaintext(
        &mut value.caller_tokens,
        &mut value.callers,
        &callers::now_rfc3339(),
    );
    if n > 0 {
        write_value(aws, secret, &value).await?;
    }
    Ok(n)
}

/// Reads the stack's callers, lets `edit` change them, writes them back when it succeeded.
/// Refused while the secret still holds plaintext tokens: the function may run a handler that
/// reads only those, and a deploy migrates them once it runs a handler that reads hashes.
pub async fn edit_callers<T>(
    aws: &Aws,
    names: &Names,
    edit: impl FnOnce(&mut Vec<callers::CallerEntry>) -> Result<(T, bool)>,
) -> Result<T> {
    edit_secret_callers(aws, &names.secret, edit).await
}

/// [`edit_callers`] on the secret named `secret` (the deploy's smoke test, which runs under
/// the deploy's own lock).
pub async fn edit_secret_callers<T>(
    aws: &Aws,
    secret: &str,
    edit: impl FnOnce(&mut Vec<callers::CallerEntry>) -> Result<(T, bool)>,
) -> Result<T> {
    let mut value = read_value(aws, secret).await?;
    if !value.caller_tokens.is_empty() {
        bail!(
            "secret {secret} still holds caller tokens in the format before named callers: run `cargo xtask deploy` once (it updates the function, then moves the tokens to named callers, keeping them working), then try again"
        );
    }
    let (out, changed) = edit(&mut value.callers)?;
    if changed {
        write_value(aws, secret, &value).await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::CallerToken;
    use std::collections::BTreeMap;

    fn state(value: Option<SecretValue>) -> State {
        State {
            arn: "arn".into(),
            tags: BTreeMap::new(),
            value,
            scheduled_for_deletion: false,
        }
    }

    #[test]
    fn planned_only_while_plaintext_tokens_are_or_will_be_there() {
        let names = Names::new("s");
        let plain = SecretValue {
            anthropic_api_key: None,
            caller_tokens: vec![CallerToken::generate()],
            callers: Vec::new(),
        };
        let c = plan(&names, true, Some(&state(Some(plain.clone())))).unwrap();
        assert_eq!(c.kind, Kind::Callers);
        assert!(plan(&names, false, Some(&state(Some(plain)))).is_none());
        let (entry, _) = callers::new_caller("default", Default::default(), "t");
        let hashed = SecretValue {
            anthropic_api_key: None,
            caller_tokens: Vec::new(),
            callers: vec![entry],
        };
        assert!(plan(&names, true, Some(&state(Some(hashed)))).is_none());
        assert!(plan(&names, true, None).is_none());
        assert!(plan(&names, true, Some(&state(None))).is_some());
    }
}
