//! `aws-proxy`: the test proxy (`stand_ins::aws_proxy`) as a process of its own, for the
//! bench: in front of `--upstream` (moto), it answers as slowly as real AWS under the latency
//! model (`emulators/src/aws_latency.toml`) at `--scale` (1 = as the model says), drawing with
//! `--seed`. Prints `listening on <endpoint URL>` once it accepts connections, and runs until
//! its stdin closes (the bench holds the other end, so the proxy never outlives it).

use anyhow::{bail, Context, Result};
use stand_ins::aws_proxy::latency::Latency;
use stand_ins::aws_proxy::AwsProxy;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut upstream = None;
    let mut scale = 1.0;
    let mut seed = 1;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--upstream" => upstream = Some(value()?),
            "--scale" => scale = value()?.parse().context("--scale: a number")?,
            "--seed" => seed = value()?.parse().context("--seed: a whole number")?,
            other => bail!(
                "unknown argument {other}; usage: aws-proxy --upstream URL [--scale F] [--seed N]"
            ),
        }
    }
    let upstream = upstream.context("--upstream URL (moto's endpoint) is required")?;
    let proxy = AwsProxy::start(&upstream).await?;
    proxy.set_latency(Some(Latency::model(scale, seed)));
    println!("listening on {}", proxy.endpoint_url());
    // Until stdin closes (read on a thread of its own: tokio's stdin is not built here).
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
    })
    .await;
    Ok(())
}
