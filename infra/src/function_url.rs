//! The function's URL, on the alias `live` (`Qualifier=live`): invoke mode (`RESPONSE_STREAM` by default, or `BUFFERED`, always set
//! explicitly because Lambda defaults to buffered), auth `NONE` or `AWS_IAM`, CORS.
//! The resource-policy statements a public URL needs live in `permission.rs`.
//!
//! A URL on the unqualified function (stacks deployed before releases) is deleted and the
//! alias's created: it has a new address, and the plan says so.

use crate::aws::{ctx, Aws, OrNotFound};
use crate::change::{Change, FieldChange, Kind, Output, Setting};
use crate::config::CorsSection;
use crate::desired::StackSpec;
use crate::names::ALIAS;
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::Result;
use aws_sdk_lambda::types::{Cors, FunctionUrlAuthType, InvokeMode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub url: String,
    /// Upper-case (`RESPONSE_STREAM` / `BUFFERED`), normalised.
    pub invoke_mode: String,
    pub auth: String,
    pub cors: Option<CorsSection>,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub invoke_mode: &'static str,
    pub auth: &'static str,
    pub cors: Option<CorsSection>,
}

/// The URL a desired stack needs, else `None`.
pub fn spec(s: &StackSpec) -> Option<Spec> {
    let u = &s.config.function_url;
    u.enabled.then(|| Spec {
        invoke_mode: u.invoke_mode.as_str(),
        auth: u.auth.as_str(),
        cors: (!u.cors.allow_origins.is_empty()).then(|| u.cors.clone()),
    })
}

/// The planned change to the function's URL, with what apply does for it.
pub fn plan(function: &str, spec: Option<Spec>, actual: Option<&State>) -> Option<ResourceChange> {
    let change = diff(spec.as_ref(), actual)?;
    let function = function.to_string();
    let name = format!("{function}:{ALIAS}");
    let action = match (spec, actual) {
        (Some(spec), None) => Action::Create { function, spec },
        (Some(spec), Some(_)) => Action::Update { function, spec },
        (None, _) => Action::Delete(function),
    };
    Some(ResourceChange::new(
        Kind::FunctionUrl,
        &name,
        change,
        action,
    ))
}

/// Deleting the URL of the unqualified function (it moves to the alias).
pub fn plan_unqualified_delete(function: &str) -> ResourceChange {
    ResourceChange::new(
        Kind::FunctionUrl,
        &format!("{function} (unqualified)"),
        Change::Delete,
        Action::DeleteUnqualified(function.to_string()),
    )
}

/// What apply does to the URL.
#[derive(Debug)]
pub enum Action {
    Create {
        function: String,
        spec: Spec,
    },
    Update {
        function: String,
        spec: Spec,
    },
    Delete(String),
    /// The URL of the unqualified function (before releases).
    DeleteUnqualified(String),
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Create { function, spec } => {
                    let url = create(cx.aws, function, spec).await?;
                    Done::output(Output::FunctionUrl, url)
                }
                Action::Update { function, spec } => {
                    update(cx.aws, function, spec).await?;
                    Done::nothing()
                }
                Action::Delete(function) => {
                    delete(cx.aws, function, Some(ALIAS)).await?;
                    Ok(Done {
                        outputs: vec![(Output::FunctionUrl, None)],
                        caller_token: None,
                    })
                }
                Action::DeleteUnqualified(function) => {
                    delete(cx.aws, function, None).await?;
                    Done::nothing()
                }
            }
        })
    }
}

/// The URL of the alias `live` (`qualifier = Some("live")`) or of the unqualified function.
pub async fn read(aws: &Aws, function: &str, qualifier: Option<&str>) -> Result<Option<State>> {
    let Some(out) = aws
        .lambda
        .get_function_url_config()
        .function_name(function)
        .set_qualifier(qualifier.map(str::to_string))
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!(
            "lambda:GetFunctionUrlConfig {}",
            qualified(function, qualifier)
        )))?
    else {
        return Ok(None);
    };
    Ok(Some(State {
        url: out.function_url().to_string(),
        invoke_mode: normalise_mode(out.invoke_mode().map(|m| m.as_str())),
        auth: out.auth_type().as_str().to_string(),
        cors: out.cors().and_then(from_sdk_cors),
    }))
}

fn qualified(function: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) => format!("{function}:{q}"),
        None => function.to_string(),
    }
}

/// Lambda omits the mode when it is the default (BUFFERED); moto answers "Buffered" when
/// none was set. Both normalise to `BUFFERED`.
fn normalise_mode(mode: Option<&str>) -> String {
    match mode {
        None => "BUFFERED".into(),
        Some(m) if m.eq_ignore_ascii_case("buffered") => "BUFFERED".into(),
        Some(m) if m.eq_ignore_ascii_case("response_stream") => "RESPONSE_STREAM".into(),
        Some(m) => m.to_string(),
    }
}

fn from_sdk_cors(c: &Cors) -> Option<CorsSection> {
    normalise_cors(Some(&CorsSection {
        allow_origins: c.allow_origins().to_vec(),
        allow_methods: c.allow_methods().to_vec(),
        allow_headers: c.allow_headers().to_vec(),
        max_age_seconds: c.max_age().and_then(|m| u32::try_from(m).ok()),
    }))
}

/// The CORS configuration as compared: Lambda echoes its defaults (`MaxAge` 0, empty
/// lists) for settings never given, and a configuration without origins allows nothing,
/// so `MaxAge` 0 is the same as none, and no origins is no CORS at all.
fn normalise_cors(c: Option<&CorsSection>) -> Option<CorsSection> {
    let mut c = c?.clone();
    if c.max_age_seconds == Some(0) {
        c.max_age_seconds = None;
    }
    (!c.allow_origins.is_empty()).then_some(c)
}

fn to_sdk_cors(c: &Option<CorsSection>) -> Cors {
    // An empty Cors object clears a previous configuration.
    let mut b = Cors::builder();
    if let Some(c) = c {
        b = b
            .set_allow_origins(Some(c.allow_origins.clone()))
            .set_allow_methods(Some(c.allow_methods.clone()))
            .set_allow_headers(Some(c.allow_headers.clone()))
            // Validated to 0..=86400 with the stack file.
            .set_max_age(c.max_age_seconds.map(|m| m.min(86400) as i32));
    }
    b.build()
}

fn cors_text(c: &Option<CorsSection>) -> String {
    match c {
        None => "(none)".into(),
        Some(c) => format!(
            "origins={} methods={} headers={} max_age={}",
            c.allow_origins.join(","),
            c.allow_methods.join(","),
            c.allow_headers.join(","),
            c.max_age_seconds.map(|m| m.to_string()).unwrap_or_default()
        ),
    }
}

pub fn diff(desired: Option<&Spec>, actual: Option<&State>) -> Option<Change> {
    match (desired, actual) {
        (None, None) => None,
        (None, Some(_)) => Some(Change::Delete),
        (Some(d), None) => Some(Change::Create {
            settings: vec![
                Setting::new("invoke_mode", d.invoke_mode),
                Setting::new("auth", d.auth),
                Setting::new("cors", cors_text(&d.cors)),
            ],
        }),
        (Some(d), Some(a)) => {
            let mut fields = Vec::new();
            if a.invoke_mode != d.invoke_mode {
                fields.push(FieldChange::new(
                    "invoke_mode",
                    a.invoke_mode.clone(),
                    d.invoke_mode,
                ));
            }
            if a.auth != d.auth {
                fields.push(FieldChange::new("auth", a.auth.clone(), d.auth));
            }
            if normalise_cors(a.cors.as_ref()) != normalise_cors(d.cors.as_ref()) {
                fields.push(FieldChange::new(
                    "cors",
                    cors_text(&a.cors),
                    cors_text(&d.cors),
                ));
            }
            (!fields.is_empty()).then_some(Change::Update { fields })
        }
    }
}

/// Creates the URL; returns it.
pub async fn create(aws: &Aws, function: &str, spec: &Spec) -> Result<String> {
    let out = aws
        .lambda
        .create_function_url_config()
        .function_name(function)
        .qualifier(ALIAS)
        .auth_type(FunctionUrlAuthType::from(spec.auth))
        .invoke_mode(InvokeMode::from(spec.invoke_mode))
        .set_cors(spec.cors.as_ref().map(|_| to_sdk_cors(&spec.cors)))
        .send()
        .await
        .map_err(ctx(format!(
            "lambda:CreateFunctionUrlConfig {function}:{ALIAS}"
        )))?;
    Ok(out.function_url().to_string())
}

/// Updates every setting (the invoke mode explicitly, every time).
/// moto quirk: moto 5.2 ignores `InvokeMode` on update (only Cors/AuthType are applied).
pub async fn update(aws: &Aws, function: &str, spec: &Spec) -> Result<()> {
    aws.lambda
        .update_function_url_config()
        .function_name(function)
        .qualifier(ALIAS)
        .auth_type(FunctionUrlAuthType::from(spec.auth))
        .invoke_mode(InvokeMode::from(spec.invoke_mode))
        .cors(to_sdk_cors(&spec.cors))
        .send()
        .await
        .map_err(ctx(format!(
            "lambda:UpdateFunctionUrlConfig {function}:{ALIAS}"
        )))?;
    Ok(())
}

pub async fn delete(aws: &Aws, function: &str, qualifier: Option<&str>) -> Result<()> {
    aws.lambda
        .delete_function_url_config()
        .function_name(function)
        .set_qualifier(qualifier.map(str::to_string))
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!(
            "lambda:DeleteFunctionUrlConfig {}",
            qualified(function, qualifier)
        )))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cors: Option<CorsSection>) -> Spec {
        Spec {
            invoke_mode: "RESPONSE_STREAM",
            auth: "NONE",
            cors,
        }
    }

    fn state(cors: Option<CorsSection>) -> State {
        State {
            url: "https://x.lambda-url.us-east-1.on.aws/".into(),
            invoke_mode: "RESPONSE_STREAM".into(),
            auth: "NONE".into(),
            cors,
        }
    }

    #[test]
    fn aws_echo_of_cors_defaults_is_no_change() {
        // What Lambda answers for a URL whose CORS was cleared or never set.
        let echoed = Cors::builder()
            .set_allow_origins(Some(vec![]))
            .set_allow_methods(Some(vec![]))
            .set_allow_headers(Some(vec![]))
            .max_age(0)
            .build();
        assert_eq!(
            diff(Some(&spec(None)), Some(&state(from_sdk_cors(&echoed)))),
            None
        );
        let with = |max_age| CorsSection {
            allow_origins: vec!["https://example.com".into()],
            allow_methods: vec!["POST".into()],
            allow_headers: vec![],
            max_age_seconds: max_age,
        };
        // MaxAge 0 is echoed for a configuration given without one, and the other way round.
        assert_eq!(
            diff(
                Some(&spec(Some(with(None)))),
                Some(&state(Some(with(Some(0)))))
            ),
            None
        );
        assert_eq!(
            diff(
                Some(&spec(Some(with(Some(0))))),
                Some(&state(Some(with(None))))
            ),
            None
        );
        assert!(diff(
            Some(&spec(Some(with(Some(60))))),
            Some(&state(Some(with(None))))
        )
        .is_some());
    }
}
