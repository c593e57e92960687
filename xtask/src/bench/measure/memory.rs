//! Memory: the serving process's and each bootstrap instance's peak RSS while streams are held
//! open.

use super::*;

pub async fn memory(bootstrap: &Path, bin: &HandlerBinary, counts: Counts) -> Result<Section> {
    let mut s = Section::new("Memory");
    let c = counts.concurrent_streams;
    s.method = format!(
        "Peak RSS is `VmHWM` from `/proc/<pid>/status`, read after every stream has finished \
         (the processes are still alive). Two set-ups:\n\n\
         1. **The Lambda function** (what the target is about): the measured `bootstrap` under \
         the local Lambda emulator in `RESPONSE_STREAM` mode. Lambda gives each instance one \
         request at a time, so 1 stream is 1 instance and {c} concurrent streams are {c} \
         instances; the figure is the largest instance's peak.\n\
         2. **One process serving {c} streams at once**: the handler's `serve` example \
         (`handler::local`, the handler library behind plain HTTP, same build profile as the \
         bootstrap) with 1 and with {c} concurrent streams, each in a fresh process. Its baseline \
         is the same process idle, before any request.\n\n\
         Every stream is a 40-word `/v1/messages` SSE reply from the fake upstream, whose events \
         are held until all streams are open, then released."
    );
    let lambda_128 = 128.0;
    for n in [1usize, c] {
        let (peak, instances) = lambda_peak(bootstrap, n).await?;
        let mbv = peak as f64 / (1024.0 * 1024.0);
        s.figures.push(
            Figure::new(
                format!("bootstrap under the Lambda emulator, {n} concurrent stream(s) ({instances} instance(s)), peak RSS of the largest instance"),
                mb(peak),
            )
            .baseline("128 MB (smallest Lambda memory size)")
            .ratio(format!("{:.0}% of 128 MB", mbv / lambda_128 * 100.0))
            .target("< 30 MB", mbv < 30.0),
        );
    }
    for n in [1usize, c] {
        let (idle, peak) = serving_process_peak(bin, n).await?;
        s.figures.push(
            Figure::new(
                format!(
                    "one process serving {n} concurrent stream(s) (`handler::local`), peak RSS"
                ),
                mb(peak),
            )
            .baseline(format!("{} idle", mb(idle)))
            .ratio(format!("+{}", mb(peak.saturating_sub(idle)))),
        );
    }
    Ok(s)
}

/// Starts `n` streams against `url`, waits until the fake has all of them open, releases the
/// gate and reads every stream to its end.
async fn hold_streams(
    url: String,
    key: &'static str,
    n: usize,
    fake: &FakeAnthropic,
    gate: &Gate,
) -> Result<()> {
    let client = client()?;
    let t = Target { url, key };
    let b = Arc::new(body(40, true));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (client, t, b) = (client.clone(), t.clone(), b.clone());
        tasks.push(tokio::spawn(async move { timed(&client, &t, &b).await }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while fake.request_count() < n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} streams reached the upstream within 120 s",
                fake.request_count()
            );
        }
        if let Some(done) = tasks.iter().position(|t| t.is_finished()) {
            let r = tasks.remove(done).await.context("stream task")?;
            r.context("a stream ended before the others were open")?;
            bail!("a stream ended while its events were held");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.release(n * 100);
    for t in tasks {
        t.await.context("stream task")??;
    }
    Ok(())
}

async fn lambda_peak(bootstrap: &Path, n: usize) -> Result<(u64, usize)> {
    let fake = FakeAnthropic::start(UPSTREAM_KEY)
        .await
        .context("starting the fake Messages API")?;
    let gate = fake.enable_gate();
    let mut opts = LocalLambdaOptions::new(bootstrap);
    opts.env = handler_env(&fake.base_url());
    opts.logs = LogSink::Discard;
    opts.invoke_mode = InvokeMode::ResponseStream;
    opts.max_instances = n;
    opts.timeout = Duration::from_secs(120);
    let lambda = LocalLambda::start(opts)
        .await
        .context("starting the local Lambda emulator")?;
    let url = format!("{}v1/messages", lambda.url());
    let run = hold_streams(url, CALLER_TOKEN, n, &fake, &gate).await;
    let pids = emulators::procfs::children_running(bootstrap);
    let peaks: Vec<u64> = pids
        .iter()
        .filter_map(|p| emulators::procfs::peak_rss(*p))
        .collect();
    lambda.stop().await;
    run?;
    let peak = peaks.iter().copied().max().with_context(|| {
        format!(
            "found no running {} to read its peak RSS",
            bootstrap.display()
        )
    })?;
    Ok((peak, peaks.len()))
}

/// Starts a fresh serving process and streams `n` at once through it; returns (idle, peak) VmHWM.
async fn serving_process_peak(bin: &HandlerBinary, n: usize) -> Result<(u64, u64)> {
    let fake = FakeAnthropic::start(UPSTREAM_KEY)
        .await
        .context("starting the fake Messages API")?;
    let gate = fake.enable_gate();
    let h = start_handler(bin, &fake.base_url()).await?;
    let idle = emulators::procfs::peak_rss(h.pid).context("reading the serving process's VmHWM")?;
    hold_streams(
        format!("{}/v1/messages", h.url),
        CALLER_TOKEN,
        n,
        &fake,
        &gate,
    )
    .await?;
    let peak = emulators::procfs::peak_rss(h.pid).context("reading the serving process's VmHWM")?;
    Ok((idle, peak))
}
