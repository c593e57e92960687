//! `cargo xtask deploy --local`: the whole stack on moto server (a local AWS), then the
//! deployed function served on localhost by the local Lambda emulator with the configuration
//! read back from moto. No AWS account needed. Runs until Ctrl-C.

use crate::code;
use crate::flags::{self, Arch, Common, OutputFormat};
use crate::output::show_plan;
use crate::progress::Progress;
use crate::prompt;
use crate::stack::{self, StackContext};
use crate::upstream::{curl_line, Upstream};
use anyhow::{bail, Context, Result};
use aws_credential_types::Credentials;
use emulators::lambda::{GatewayOptions, InvokeMode, LocalLambda, LocalLambdaOptions};
use emulators::moto::MotoServer;
use infra::aws::{Aws, OrNotFound};
use infra::desired::Desired;
use infra::secret::{ApiKey, SecretInput};
use serde::Serialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Dummy credentials for moto (it accepts any).
const LOCAL_KEY_ID: &str = "testing";
const LOCAL_SECRET: &str = "testing";
const LOCAL_REGION: &str = "us-east-1";

pub async fn deploy_local(
    args: flags::Deploy,
    common: &Common,
    progress: &Progress,
) -> Result<ExitCode> {
    if common.endpoint_url.is_some() || common.profile.is_some() {
        progress.note("--local ignores --endpoint-url/--profile/AWS_ENDPOINT_URL: it starts its own moto server");
    }
    let host = host_arch()?;
    if let Some(a) = args.stack.arch {
        if a != host {
            bail!(
                "--local runs the function on this {} machine, so it cannot use --arch {}; drop --arch for a local deploy",
                host.lambda_name(),
                a.lambda_name()
            );
        }
    }

    // Read before anything starts, so no spinner draws over a prompt for it.
    let real_key = prompt::api_key(args.api_key_stdin)?;

    progress.step("starting moto server (the local AWS; installed on first use)");
    // A first use installs moto with pip, whose output goes to the terminal.
    let moto = progress
        .hidden_while(MotoServer::start_or_install())
        .await
        .context("starting moto server for the local deploy")?;
    let endpoint = moto.endpoint_url();

    // The upstream: the real API when a key is given, the built-in fake otherwise.
    let upstream = match real_key {
        Some(key) => Upstream::real(&key),
        None => {
            progress.step("starting the fake Messages API (ANTHROPIC_API_KEY is not set)");
            Upstream::fake().await?
        }
    };

    let aws = local_aws(&endpoint).await?;
    let mut overrides = stack::overrides(common, &args.stack);
    overrides.architecture = Some(host);
    overrides.region = Some(LOCAL_REGION.into());
    if upstream.base_url.is_some() {
        overrides.anthropic_base_url = upstream.base_url.clone();
    }
    let mut config = stack::merge(common, &overrides)?;
    if config.function.package == infra::config::Package::Image {
        // moto has no registry to push an image to; the local emulator runs `bootstrap` itself.
        progress.note(
            "package = \"image\" is deployed as a zip locally (moto has no container registry)",
        );
        config.function.package = infra::config::Package::Zip;
    }
    let ctx = StackContext::from_parts(config, aws, Some(endpoint.clone()));

    let artifact = code::artifact(&args.code, host, progress).await?;
    progress.step(format!("reading stack `{}` from moto", ctx.stack));
    let secret = SecretInput {
        anthropic_api_key: Some(ApiKey::new(upstream.key.as_str())),
        rotate_token: args.rotate_token,
    };
    let desired = Desired::new(ctx.config.clone(), Some(&artifact), secret)?;
    let actual = infra::actual::read_actual(&ctx.aws, &ctx.stack).await?;
    let plan = infra::plan::plan(&desired, &actual);
    progress.finish();
    show_plan(common, &plan);
    if !plan.blockers.is_empty() {
        bail!(
            "the plan cannot be applied:\n  - {}",
            plan.blockers.join("\n  - ")
        );
    }
    let outputs = infra::apply(&ctx.aws, &plan, &desired, progress)
        .await
        .context("deploying the stack to moto")?;

    progress.step("reading the deployed function's configuration back from moto");
    let deployed = read_back(&ctx).await?;
    let bootstrap = unpack_bootstrap(&artifact.zip).await?;

    progress.step("starting the local Lambda");
    let mut env = deployed.env.clone();
    env.extend([
        ("AWS_ENDPOINT_URL".to_string(), endpoint.clone()),
        ("AWS_ACCESS_KEY_ID".to_string(), LOCAL_KEY_ID.to_string()),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            LOCAL_SECRET.to_string(),
        ),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ]);
    let mut opts = LocalLambdaOptions::new(&bootstrap);
    opts.env = env;
    opts.function_name = ctx.function_name();
    opts.memory_mb = deployed.memory_mb;
    opts.timeout = Duration::from_secs(deployed.timeout_seconds);
    opts.invoke_mode = deployed.invoke_mode;
    opts.max_instances = deployed
        .reserved_concurrency
        .map_or(10, |n| n.clamp(1, 10) as usize);
    opts.throttle_when_busy = deployed.reserved_concurrency.is_some();
    opts.listen = SocketAddr::from(([127, 0, 0, 1], args.port.unwrap_or(0)));
    opts.region = LOCAL_REGION.into();
    opts.account_id = ctx.aws.account_id.clone();
    if let Some(routes) = &deployed.api_routes {
        opts.gateway = Some(GatewayOptions {
            routes: routes.clone(),
            ..Default::default()
        });
    }
    let lambda = LocalLambda::start(opts)
        .await
        .context("starting the local Lambda emulator")?;
    progress.finish();

    let served = Served {
        stack: ctx.stack.clone(),
        function_url: lambda.url(),
        api_url: lambda.gateway_url(),
        caller_token: outputs
            .caller_token
            .as_ref()
            .map(|t| t.expose().to_string()),
        aws_endpoint_url: endpoint.clone(),
        upstream: upstream.shown.clone(),
        invoke_mode: deployed.invoke_mode_name,
    };
    match common.output {
        OutputFormat::Text => println!("{served}"),
        OutputFormat::Json => println!("{}", serde_json::to_string(&served)?),
    }

    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("stopping the local Lambda, the fake upstream and moto server");
    lambda.stop().await;
    drop(upstream);
    moto.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// An AWS connection to moto with dummy credentials.
async fn local_aws(endpoint: &str) -> Result<Aws> {
    let config = infra::tls::sdk_defaults()
        .region(aws_config::Region::new(LOCAL_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            LOCAL_KEY_ID,
            LOCAL_SECRET,
            None,
            None,
            "deploy-local",
        ))
        .retry_config(infra::aws::retry_config())
        .load()
        .await;
    Aws::from_sdk_config(config).await
}

fn host_arch() -> Result<Arch> {
    match Arch::host() {
        Some(arch) => Ok(arch),
        None => bail!(
            "--local needs an x86_64 or aarch64 machine to run the function; this one is {}",
            std::env::consts::ARCH
        ),
    }
}

/// The function as moto holds it after the deploy.
struct Deployed {
    env: Vec<(String, String)>,
    memory_mb: u32,
    timeout_seconds: u64,
    invoke_mode: InvokeMode,
    invoke_mode_name: String,
    reserved_concurrency: Option<i32>,
    api_routes: Option<Vec<String>>,
}

async fn read_back(ctx: &StackContext) -> Result<Deployed> {
    let name = ctx.function_name();
    let lambda = &ctx.aws.lambda;
    let cfg = lambda
        .get_function_configuration()
        .function_name(&name)
        .send()
        .await
        .map_err(infra::aws::ctx(format!(
            "lambda:GetFunctionConfiguration {name}"
        )))?;
    let env = cfg
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let url = lambda
        .get_function_url_config()
        .function_name(&name)
        .qualifier(infra::names::ALIAS)
        .send()
        .await
        .or_not_found()
        .map_err(infra::aws::ctx(format!(
            "lambda:GetFunctionUrlConfig {name}:{}",
            infra::names::ALIAS
        )))?;
    let (invoke_mode, invoke_mode_name) = match url {
        Some(url) => {
            let mode = url
                .invoke_mode()
                .map(|m| m.as_str().to_string())
                .unwrap_or_else(|| "BUFFERED".into());
            let parsed = if mode == "RESPONSE_STREAM" {
                InvokeMode::ResponseStream
            } else {
                InvokeMode::Buffered
            };
            (parsed, mode)
        }
        None => (
            InvokeMode::Buffered,
            "BUFFERED (no Function URL)".to_string(),
        ),
    };
    let reserved_concurrency = lambda
        .get_function_concurrency()
        .function_name(&name)
        .send()
        .await
        .map_err(infra::aws::ctx(format!(
            "lambda:GetFunctionConcurrency {name}"
        )))?
        .reserved_concurrent_executions();
    let api_routes = if ctx.config.http_api.enabled {
        Some(read_routes(ctx).await?)
    } else {
        None
    };
    Ok(Deployed {
        env,
        memory_mb: cfg.memory_size().unwrap_or(128) as u32,
        timeout_seconds: cfg.timeout().unwrap_or(3) as u64,
        invoke_mode,
        invoke_mode_name,
        reserved_concurrency,
        api_routes,
    })
}

async fn read_routes(ctx: &StackContext) -> Result<Vec<String>> {
    let apis = ctx
        .aws
        .apigw
        .get_apis()
        .send()
        .await
        .map_err(infra::aws::ctx("apigateway:GetApis"))?;
    let api = apis
        .items()
        .iter()
        .find(|a| a.name() == Some(ctx.names.http_api.as_str()))
        .with_context(|| {
            format!(
                "the deploy did not leave an HTTP API named {} in moto",
                ctx.names.http_api
            )
        })?;
    let id = api.api_id().unwrap_or_default();
    let routes = ctx
        .aws
        .apigw
        .get_routes()
        .api_id(id)
        .send()
        .await
        .map_err(infra::aws::ctx(format!("apigateway:GetRoutes {id}")))?;
    Ok(routes
        .items()
        .iter()
        .filter_map(|r| r.route_key().map(str::to_owned))
        .collect())
}

/// Writes the deployed zip's `bootstrap` where the emulator can run it.
async fn unpack_bootstrap(zip_bytes: &[u8]) -> Result<PathBuf> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes))
        .context("reading the deployed zip")?;
    let mut entry = archive
        .by_name("bootstrap")
        .context("the deployed zip has no bootstrap")?;
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .context("unzipping bootstrap")?;
    let dir = crate::paths::target_dir()
        .await?
        .join("lambda")
        .join("local")
        .join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("bootstrap");
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))?;
    Ok(path)
}

#[derive(Serialize)]
struct Served {
    stack: String,
    function_url: String,
    api_url: Option<String>,
    caller_token: Option<String>,
    aws_endpoint_url: String,
    upstream: String,
    invoke_mode: String,
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        writeln!(
            f,
            "Stack `{}` is deployed on moto ({}) and served locally.",
            self.stack, self.aws_endpoint_url
        )?;
        writeln!(f, "Upstream: {}", self.upstream)?;
        writeln!(f, "AWS endpoint: {}", self.aws_endpoint_url)?;
        writeln!(f, "URL: {}", self.function_url)?;
        if let Some(api) = &self.api_url {
            writeln!(f, "API URL: {api}")?;
        }
        writeln!(f, "Invoke mode: {}", self.invoke_mode)?;
        let token = self.caller_token.as_deref();
        if let Some(t) = token {
            writeln!(f, "Caller token: {t}")?;
        }
        writeln!(f, "Try:")?;
        writeln!(f, "  {}", curl_line(&self.function_url, token))?;
        write!(f, "Press Ctrl-C to stop.")
    }
}
