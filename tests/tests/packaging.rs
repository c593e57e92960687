//! `package = "layer"` and `package = "image"` against moto server, through the recording
//! proxy; everything checked with plain SDK clients talking to moto directly.
//!
//! Images: moto is ECR's control plane but has no registry to push to, so the data plane is
//! the ECR stand-in (`stand_ins::ecr_stand_in`): Debian's real `docker-registry` with basic
//! auth (user `AWS`, moto's authorization-token password), behind a small proxy that, when a
//! manifest PUT succeeds, registers the same manifest in moto's ECR with `PutImage` (its
//! digest given explicitly), as ECR does at the end of a push. moto runs with
//! `MOTO_LAMBDA_STUB_ECR=false`, so its CreateFunction/UpdateFunctionCode refuse an image
//! that is not in its ECR. Under CI a missing `docker-registry` or `skopeo` fails the test
//! with the install command; elsewhere it is reported loudly and the image test returns.

use infra::artifact::Artifact;
use infra::config::{Overrides, Package};
use infra::{Change, Kind};
use serde_json::Value;
use stand_ins::aws_proxy::{AwsProxy, Call};
use stand_ins::ecr_stand_in::{self, skopeo, EcrStandIn, RegistryCall};
use stand_ins::iam_actions::{iam_action, registry_iam_action};
use stand_ins::stack_support::*;
use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Like `stack_support::env`, with extra environment for moto.
async fn env_with(moto_env: &[(&str, &str)]) -> Env {
    let moto = emulators::moto::MotoServer::start_with_env(moto_env)
        .await
        .expect("moto server (see the message for how to install it)");
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.unwrap();
    let aws = infra::aws::Aws::from_sdk_config(sdk_config(&proxy.endpoint_url()).await)
        .await
        .unwrap()
        .with_iam_retry(infra::aws::IamRetry {
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
            max_total: Duration::from_secs(20),
        });
    let direct = sdk_config(&moto.endpoint_url()).await;
    proxy.clear();
    Env {
        moto,
        proxy,
        aws,
        direct,
    }
}

fn package(stack: &str, p: Package) -> Overrides {
    Overrides {
        stack: Some(stack.into()),
        package: Some(p),
        ..Default::default()
    }
}

async fn apply(aws: &infra::aws::Aws, d: &infra::Desired) -> (infra::Plan, infra::Outputs) {
    // Boxed: these futures are large, and a test thread's stack is not.
    let p = Box::pin(plan_for(aws, d)).await;
    assert!(p.blockers.is_empty(), "{p}");
    let out = Box::pin(infra::apply(aws, &p, d, &infra::Silent))
        .await
        .unwrap_or_else(|e| panic!("applying\n{p}\nfailed: {e:#}"));
    (p, out)
}

fn mutating(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.mutating)
        .map(|c| format!("{} {}", c.service, c.operation))
        .collect()
}

/// Every recorded call maps to an action `docs/deployer-policy.json` allows, on the stack's
/// name patterns.
fn assert_policy_covers(calls: &[Call], registry: &[RegistryCall]) {
    let policy: Value =
        serde_json::from_str(include_str!("../../docs/deployer-policy.json")).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    let needed: BTreeSet<String> = calls
        .iter()
        .filter_map(iam_action)
        .chain(registry.iter().filter_map(registry_iam_action))
        .collect();
    for action in &needed {
        let allowing: Vec<&Value> = statements
            .iter()
            .filter(|s| as_strings(&s["Action"]).contains(action))
            .collect();
        assert!(
            !allowing.is_empty(),
            "docs/deployer-policy.json lacks {action}"
        );
        let resources: Vec<String> = allowing
            .iter()
            .flat_map(|s| as_strings(&s["Resource"]))
            .collect();
        let scoped = match action.as_str() {
            // No resource-level permissions (IAM service authorization reference).
            "lambda:ListLayerVersions" => resources == ["*"],
            a if a.contains("Layer") && a.starts_with("lambda:") => resources
                .iter()
                .all(|r| r.starts_with("arn:aws:lambda:*:*:layer:claude-proxy-")),
            "ecr:GetAuthorizationToken" => resources == ["*"],
            a if a.starts_with("ecr:") => resources
                .iter()
                .all(|r| r == "arn:aws:ecr:*:*:repository/claude-proxy-*"),
            _ => true,
        };
        assert!(scoped, "{action} is allowed on {resources:?}");
    }
}

/// Runs a test body on a runtime whose threads have room for these (debug-build, deeply
/// nested) futures: the default 2 MiB test-thread stack overflows.
fn run<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let thread = std::thread::Builder::new()
        .stack_size(32 * 1024 * 1024)
        .spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_stack_size(16 * 1024 * 1024)
                .enable_all()
                .build()
                .unwrap()
                .block_on(body())
        })
        .unwrap();
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn layer_package_publishes_only_changed_bytes_and_teardown_deletes_every_version() {
    run(layer_package)
}

async fn layer_package() {
    let e = Box::pin(env_with(&[])).await;
    let stack = "lay";
    let f = "claude-proxy-lay";
    let layer = "claude-proxy-lay-bootstrap";
    let lambda = aws_sdk_lambda::Client::new(&e.direct);
    let o = package(stack, Package::Layer);

    // First deploy: one layer version, attached; the function's zip has no bootstrap.
    let d = desired(&o, Some(KEY));
    let (p, _) = Box::pin(apply(&e.aws, &d)).await;
    assert!(
        p.changes
            .iter()
            .any(|c| c.kind == Kind::Layer && matches!(c.change, Change::Create { .. })),
        "{p}"
    );
    let versions = lambda
        .list_layer_versions()
        .layer_name(layer)
        .send()
        .await
        .unwrap();
    assert_eq!(versions.layer_versions().len(), 1, "{versions:?}");
    let v1 = versions.layer_versions()[0]
        .layer_version_arn()
        .unwrap()
        .to_string();
    let got = lambda.get_function().function_name(f).send().await.unwrap();
    let c = got.configuration().unwrap();
    let attached: Vec<&str> = c.layers().iter().filter_map(|l| l.arn()).collect();
    assert_eq!(attached, [v1.as_str()]);
    assert_eq!(c.package_type().map(|p| p.as_str()), Some("Zip"));
    assert_eq!(c.runtime().map(|r| r.as_str()), Some("provided.al2023"));
    assert_eq!(
        c.code_sha256(),
        Some(infra::layer::function_zip().code_sha256.as_str())
    );
    let mut own =
        zip::ZipArchive::new(std::io::Cursor::new(&infra::layer::function_zip().zip)).unwrap();
    assert!(
        own.by_name("bootstrap").is_err(),
        "the function's zip must not shadow /opt/bootstrap"
    );
    // The layer holds exactly the bytes of a zip with an executable `bootstrap` at its root
    // (so Lambda extracts it to /opt/bootstrap).
    let lv = lambda
        .get_layer_version()
        .layer_name(layer)
        .version_number(1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        lv.content().and_then(|c| c.code_sha256()),
        Some(artifact().code_sha256.as_str())
    );
    let mut content = zip::ZipArchive::new(std::io::Cursor::new(artifact().zip)).unwrap();
    assert_eq!(content.len(), 1);
    let mut entry = content.by_name("bootstrap").unwrap();
    assert_eq!(entry.unix_mode().unwrap() & 0o777, 0o755);
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).unwrap();
    assert!(bytes.starts_with(b"\x7fELF"));
    assert_eq!(
        lv.compatible_architectures()
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        ["x86_64"]
    );
    assert_eq!(
        lv.compatible_runtimes()
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>(),
        ["provided.al2023"]
    );

    // Redeploy, nothing changed: nothing published, nothing written at all.
    let mark = e.proxy.calls().len();
    let (p, out) = Box::pin(apply(&e.aws, &desired(&o, Some(KEY)))).await;
    assert!(p.is_empty(), "{p}");
    assert!(!out.changed);
    assert_eq!(mutating(&e.proxy.calls()[mark..]), Vec::<String>::new());

    // New bytes: exactly one new version, the function moves to it, then the old one goes
    // (never while the function still uses it).
    let mut d2 = desired(&o, Some(KEY));
    d2.spec.as_mut().unwrap().artifact =
        Some(Artifact::from_bootstrap_bytes(b"\x7fELF a second build").unwrap());
    let mark = e.proxy.calls().len();
    Box::pin(apply(&e.aws, &d2)).await;
    let ops = mutating(&e.proxy.calls()[mark..]);
    assert_eq!(
        ops,
        [
            format!("lambda POST /2018-10-31/layers/{layer}/versions"),
            format!("lambda PUT /2015-03-31/functions/{f}/configuration"),
            // A function version carries the new layer, and `live` moves onto it.
            format!("lambda POST /2015-03-31/functions/{f}/versions"),
            format!("lambda PUT /2015-03-31/functions/{f}/aliases/live"),
            format!("lambda DELETE /2018-10-31/layers/{layer}/versions/1"),
        ]
    );
    let versions = lambda
        .list_layer_versions()
        .layer_name(layer)
        .send()
        .await
        .unwrap();
    let arns: Vec<&str> = versions
        .layer_versions()
        .iter()
        .filter_map(|v| v.layer_version_arn())
        .collect();
    assert_eq!(arns.len(), 1, "{arns:?}");
    assert!(arns[0].ends_with(":2"), "{arns:?}");
    let c = lambda
        .get_function_configuration()
        .function_name(f)
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.layers()
            .iter()
            .filter_map(|l| l.arn())
            .collect::<Vec<_>>(),
        arns
    );
    assert!(Box::pin(plan_for(&e.aws, &d2)).await.is_empty());

    // Back to a plain zip: an update, not a replacement; the layer's versions go.
    let z = desired(&package(stack, Package::Zip), Some(KEY));
    let (p, _) = Box::pin(apply(&e.aws, &z)).await;
    assert_eq!(p.count(|c| matches!(c, Change::Replace { .. })), 0, "{p}");
    let ops = mutating(&e.proxy.calls());
    let detach = ops
        .iter()
        .rposition(|o| o.ends_with(&format!("/functions/{f}/configuration")))
        .unwrap();
    let drop_v2 = ops
        .iter()
        .position(|o| o.ends_with(&format!("/layers/{layer}/versions/2")))
        .unwrap();
    assert!(
        detach < drop_v2,
        "detached before its version is deleted: {ops:?}"
    );
    let c = lambda
        .get_function_configuration()
        .function_name(f)
        .send()
        .await
        .unwrap();
    assert!(c.layers().is_empty(), "{:?}", c.layers());
    assert_eq!(c.code_sha256(), Some(artifact().code_sha256.as_str()));
    let versions = lambda
        .list_layer_versions()
        .layer_name(layer)
        .send()
        .await
        .unwrap();
    assert!(versions.layer_versions().is_empty());
    assert!(Box::pin(plan_for(&e.aws, &z)).await.is_empty());

    // And to a layer again, then teardown: no version of the layer is left.
    Box::pin(apply(&e.aws, &desired(&o, Some(KEY)))).await;
    let report = Box::pin(infra::teardown(&e.aws, stack, &infra::Silent))
        .await
        .unwrap();
    assert!(
        report.deleted.iter().any(|s| s.contains("layer version")),
        "{report}"
    );
    let versions = lambda
        .list_layer_versions()
        .layer_name(layer)
        .send()
        .await
        .unwrap();
    assert!(
        versions.layer_versions().is_empty(),
        "{:?}",
        versions.layer_versions()
    );
    Box::pin(assert_nothing_left(&e.direct, stack)).await;
    assert_policy_covers(&e.proxy.calls(), &[]);
}

/// The ECR stand-in, or `None` (outside CI) when `docker-registry`/`skopeo` are missing.
async fn stand_in(e: &Env) -> Option<EcrStandIn> {
    if let Err(msg) = ecr_stand_in::tools_present() {
        if in_ci() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED (not CI): {msg}");
        return None;
    }
    Some(
        EcrStandIn::start(aws_sdk_ecr::Client::new(&e.direct), ACCOUNT)
            .await
            .unwrap(),
    )
}

fn image(bytes: &[u8]) -> artifacts::Image {
    artifacts::Image::from_bootstrap(bytes, artifacts::Arch::X86_64)
}

#[test]
fn image_package_pushes_once_by_digest_and_switching_kinds_converges() {
    run(image_package)
}

async fn image_package() {
    let e = Box::pin(env_with(&[("MOTO_LAMBDA_STUB_ECR", "false")])).await;
    let Some(registry) = stand_in(&e).await else {
        return;
    };
    let aws = e.aws.clone().with_ecr_registry_url(&registry.url());
    let stack = "img";
    let f = "claude-proxy-img";
    let repo = "claude-proxy-img";
    let lambda = aws_sdk_lambda::Client::new(&e.direct);
    let ecr = aws_sdk_ecr::Client::new(&e.direct);

    // A zip stack first, then switched to an image: the function is replaced.
    Box::pin(apply(
        &aws,
        &desired(&package(stack, Package::Zip), Some(KEY)),
    ))
    .await;
    let img1 = image(b"\x7fELF static bootstrap, first build");
    let d = desired(&package(stack, Package::Image), Some(KEY)).with_image(img1.clone());
    let p = Box::pin(plan_for(&aws, &d)).await;
    let text = p.to_string();
    assert!(
        text.contains("package zip -> image (Lambda cannot change PackageType in place)"),
        "{text}"
    );
    Box::pin(apply(&aws, &d)).await;

    let repos = ecr
        .describe_repositories()
        .repository_names(repo)
        .send()
        .await
        .unwrap();
    let r = &repos.repositories()[0];
    let repo_uri = r.repository_uri().unwrap().to_string();
    assert_eq!(
        r.image_scanning_configuration().map(|c| c.scan_on_push()),
        Some(false)
    );
    // Untagged images (the builds before the last) expire.
    let lifecycle = ecr
        .get_lifecycle_policy()
        .repository_name(repo)
        .send()
        .await
        .expect("the repository has a lifecycle policy");
    let policy: serde_json::Value =
        serde_json::from_str(lifecycle.lifecycle_policy_text().unwrap()).unwrap();
    let rule = &policy["rules"][0];
    assert_eq!(rule["selection"]["tagStatus"], "untagged", "{policy}");
    assert_eq!(rule["action"]["type"], "expire", "{policy}");
    let tags = ecr
        .list_tags_for_resource()
        .resource_arn(r.repository_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_ours(
        &tags
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
        stack,
        "ECR repository",
    );
    let got = lambda.get_function().function_name(f).send().await.unwrap();
    let c = got.configuration().unwrap();
    assert_eq!(c.package_type().map(|p| p.as_str()), Some("Image"));
    let uri = got.code().and_then(|c| c.image_uri()).unwrap();
    assert_eq!(uri, format!("{repo_uri}@{}", img1.digest()));
    assert!(uri.contains("@sha256:"), "{uri}");
    // What hangs off the function was recreated with it.
    let url = lambda
        .get_function_url_config()
        .function_name(f)
        .send()
        .await
        .unwrap();
    assert_eq!(
        url.invoke_mode().map(|m| m.as_str()),
        Some("RESPONSE_STREAM")
    );
    let policy = lambda.get_policy().function_name(f).send().await.unwrap();
    let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    assert_eq!(policy["Statement"].as_array().unwrap().len(), 2, "{policy}");
    let conc = lambda
        .get_function_concurrency()
        .function_name(f)
        .send()
        .await
        .unwrap();
    assert_eq!(conc.reserved_concurrent_executions(), Some(17));

    // The registry holds one manifest (not an index) for the right architecture.
    let reference = format!(
        "docker://{}/{repo}@{}",
        registry.registry_address(),
        img1.digest()
    );
    let creds = registry.creds();
    let raw: Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &creds,
        &reference,
    ]))
    .unwrap();
    assert_eq!(
        raw["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{raw}"
    );
    assert!(raw.get("manifests").is_none(), "an index: {raw}");
    assert_eq!(raw["layers"].as_array().unwrap().len(), 1);
    let config: Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--config",
        "--tls-verify=false",
        "--creds",
        &creds,
        &reference,
    ]))
    .unwrap();
    assert_eq!(config["architecture"], "amd64", "{config}");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["Entrypoint"][0], "/bootstrap", "{config}");

    // Unchanged image: no push (the registry saw no request at all), nothing written.
    let mut registry_calls = registry.calls();
    let mark = e.proxy.calls().len();
    registry.clear();
    let (p, out) = Box::pin(apply(&aws, &d)).await;
    assert!(p.is_empty(), "{p}");
    assert!(!out.changed);
    assert_eq!(mutating(&e.proxy.calls()[mark..]), Vec::<String>::new());
    assert!(
        registry.calls().iter().all(|c| !c.is_write()),
        "{:?}",
        registry.calls()
    );

    // A new build: one push, one code update by digest.
    let img2 = image(b"\x7fELF static bootstrap, second build");
    let d2 = desired(&package(stack, Package::Image), Some(KEY)).with_image(img2.clone());
    let mark = e.proxy.calls().len();
    Box::pin(apply(&aws, &d2)).await;
    let ops = mutating(&e.proxy.calls()[mark..]);
    assert_eq!(
        ops,
        [
            format!("lambda PUT /2015-03-31/functions/{f}/code"),
            format!("lambda POST /2015-03-31/functions/{f}/versions"),
            format!("lambda PUT /2015-03-31/functions/{f}/aliases/live"),
        ],
        "the push itself goes to the registry, not the AWS API"
    );
    let manifest_puts = registry
        .calls()
        .iter()
        .filter(|c| c.method == "PUT" && c.path.contains("/manifests/"))
        .count();
    assert_eq!(manifest_puts, 1, "{:?}", registry.calls());
    registry_calls.extend(registry.calls());
    let got = lambda.get_function().function_name(f).send().await.unwrap();
    assert_eq!(
        got.code().and_then(|c| c.image_uri()),
        Some(format!("{repo_uri}@{}", img2.digest()).as_str())
    );
    assert!(Box::pin(plan_for(&aws, &d2)).await.is_empty());

    // Back to a zip: replaced again, the repository goes.
    let z = desired(&package(stack, Package::Zip), Some(KEY));
    let p = Box::pin(plan_for(&aws, &z)).await;
    assert!(p.to_string().contains("package image -> zip"), "{p}");
    Box::pin(apply(&aws, &z)).await;
    let c = lambda
        .get_function_configuration()
        .function_name(f)
        .send()
        .await
        .unwrap();
    assert_eq!(c.package_type().map(|p| p.as_str()), Some("Zip"));
    assert!(Box::pin(plan_for(&aws, &z)).await.is_empty());
    let gone = ecr
        .describe_repositories()
        .repository_names(repo)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        gone.as_service_error()
            .and_then(|e| aws_sdk_ecr::error::ProvideErrorMetadata::code(e)),
        Some("RepositoryNotFoundException")
    );

    // Image again, then teardown: no repository and nothing else left.
    Box::pin(apply(&aws, &d2)).await;
    registry_calls.extend(registry.calls());
    Box::pin(infra::teardown(&aws, stack, &infra::Silent))
        .await
        .unwrap();
    let repos = ecr.describe_repositories().send().await.unwrap();
    assert!(
        repos
            .repositories()
            .iter()
            .all(|r| r.repository_name() != Some(repo)),
        "repository left"
    );
    Box::pin(assert_nothing_left(&e.direct, stack)).await;
    assert_policy_covers(&e.proxy.calls(), &registry_calls);
}
