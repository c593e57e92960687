//! The function's URL: invoke mode (`RESPONSE_STREAM` by default, or `BUFFERED`, always set
//! explicitly because Lambda defaults to buffered), auth `NONE` or `AWS_IAM`, CORS.
//! The resource-policy statements a public URL needs live in `permission.rs`.

use crate::aws::{ctx, is_not_found, Aws};
use crate::config::CorsSection;
use crate::plan::{Change, FieldChange, Setting};
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

pub async fn read(aws: &Aws, function: &str) -> Result<Option<State>> {
    let out = match aws
        .lambda
        .get_function_url_config()
        .function_name(function)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(ctx(format!("lambda:GetFunctionUrlConfig {function}"))(e)),
    };
    Ok(Some(State {
        url: out.function_url().to_string(),
        invoke_mode: normalise_mode(out.invoke_mode().map(|m| m.as_str())),
        auth: out.auth_type().as_str().to_string(),
        cors: out.cors().and_then(from_sdk_cors),
    }))
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
    let s = CorsSection {
        allow_origins: c.allow_origins().to_vec(),
        allow_methods: c.allow_methods().to_vec(),
        allow_headers: c.allow_headers().to_vec(),
        max_age_seconds: c.max_age().map(|m| m as u32),
    };
    (s != CorsSection::default()).then_some(s)
}

fn to_sdk_cors(c: &Option<CorsSection>) -> Cors {
    // An empty Cors object clears a previous configuration.
    let mut b = Cors::builder();
    if let Some(c) = c {
        b = b
            .set_allow_origins(Some(c.allow_origins.clone()))
            .set_allow_methods(Some(c.allow_methods.clone()))
            .set_allow_headers(Some(c.allow_headers.clone()))
            .set_max_age(c.max_age_seconds.map(|m| m as i32));
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
            if a.cors != d.cors {
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
        .auth_type(FunctionUrlAuthType::from(spec.auth))
        .invoke_mode(InvokeMode::from(spec.invoke_mode))
        .set_cors(spec.cors.as_ref().map(|_| to_sdk_cors(&spec.cors)))
        .send()
        .await
        .map_err(ctx(format!("lambda:CreateFunctionUrlConfig {function}")))?;
    Ok(out.function_url().to_string())
}

/// Updates every setting (the invoke mode explicitly, every time).
/// moto quirk: moto 5.2 ignores `InvokeMode` on update (only Cors/AuthType are applied).
pub async fn update(aws: &Aws, function: &str, spec: &Spec) -> Result<()> {
    aws.lambda
        .update_function_url_config()
        .function_name(function)
        .auth_type(FunctionUrlAuthType::from(spec.auth))
        .invoke_mode(InvokeMode::from(spec.invoke_mode))
        .cors(to_sdk_cors(&spec.cors))
        .send()
        .await
        .map_err(ctx(format!("lambda:UpdateFunctionUrlConfig {function}")))?;
    Ok(())
}

pub async fn delete(aws: &Aws, function: &str) -> Result<()> {
    match aws
        .lambda
        .delete_function_url_config()
        .function_name(function)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(ctx(format!("lambda:DeleteFunctionUrlConfig {function}"))(e)),
    }
}
