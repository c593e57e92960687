//! The real handler, as `package = "image"` ships it: a static `bootstrap` built from this
//! workspace, pushed to a real registry, pulled back with skopeo, unpacked into an empty
//! root filesystem (no libc, no loader, no CA bundle) and run there by the local Lambda
//! emulator (`emulators::lambda::LocalLambda`), which answers `GET /health` through it.

mod common;

use artifacts::build::{self, BuildOptions, Profile, Target};
use artifacts::registry::{Credentials, Registry};
use artifacts::{Arch, Image, Runtime};
use common::*;
use emulators::lambda::{InvokeMode, LocalLambda, LocalLambdaOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_handler_from_the_registry_answers_health_in_an_empty_root() {
    let Some(server) = RegistryServer::start() else {
        return;
    };
    let arch = Arch::host().unwrap();
    let built = tokio::task::spawn_blocking(move || {
        let mut opts = BuildOptions::bootstrap(
            Target {
                arch,
                static_: true,
            },
            Runtime::ProvidedAl2023,
        );
        opts.profile = Profile::Debug;
        opts.manifest_path = Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .join("Cargo.toml"),
        );
        build::build(&opts)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("static build of the handler: {e}"));
    assert!(built.report.is_static(), "{:?}", built.report);
    let bytes = std::fs::read(&built.path).unwrap();

    let image = Image::from_bootstrap(&bytes, arch);
    let registry = Registry::new(
        &server.address(),
        "claude-proxy-handler",
        Some(Credentials::new(&server.user, &server.password)),
    )
    .unwrap();
    let report = registry.push(&image, "latest").await.unwrap();

    let work = tempfile::tempdir().unwrap();
    let root = pull_and_unpack(&server, &report.image_uri, image.digest(), work.path());
    assert_eq!(std::fs::read(root.join("bootstrap")).unwrap(), bytes);
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);

    // The emulator starts an executable; this one puts the bootstrap in its empty root.
    let argv = chroot_command(&root);
    let wrapper = work.path().join("run-in-empty-root");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {}\n",
            argv.iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut opts = LocalLambdaOptions::new(&wrapper);
    opts.timeout = Duration::from_secs(20);
    // The handler's default response mode, served by a RESPONSE_STREAM Function URL.
    opts.invoke_mode = InvokeMode::ResponseStream;
    opts.env = vec![
        ("ANTHROPIC_API_KEY".into(), "test-key-not-used".into()),
        ("CALLER_TOKEN".into(), "caller-token".into()),
        ("ANTHROPIC_BASE_URL".into(), "http://127.0.0.1:9".into()),
        ("RESPONSE_MODE".into(), "stream".into()),
    ];
    let lambda = LocalLambda::start(opts)
        .await
        .expect("starting the local Lambda");
    let resp = reqwest::Client::new()
        .get(format!("{}/health", lambda.url().trim_end_matches('/')))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("GET /health through the local Function URL");
    let status = resp.status();
    let body = resp.text().await.unwrap();
    lambda.stop().await;
    assert_eq!(status, 200, "GET /health answered {status}: {body}");
    assert!(!body.is_empty());
}
