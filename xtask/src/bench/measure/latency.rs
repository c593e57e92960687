//! Proxy overhead (requests through the handler against the fake upstream reached directly) and
//! streaming latency (each event's way from the fake upstream through the handler to the client).

use super::*;

pub async fn proxy_overhead(bin: &HandlerBinary, counts: Counts) -> Result<Section> {
    let mut s = Section::new("Proxy overhead");
    let n = counts.proxy_requests;
    s.method = format!(
        "`POST /v1/messages` ({n} requests per mode and path, after 20 unmeasured warm-up \
         requests each), sent alternately straight to the fake Messages API \
         (`emulators::anthropic::FakeAnthropic`) and through the handler served by \
         `handler::local` (its own process) in front of that same fake; one keep-alive HTTP/1.1 \
         client. TTFB is the time to the first body byte, total the time to the end of the body. \
         Buffered: a 20-word reply as one JSON body; streaming: the same reply as SSE (27 events). \
         The overhead is p(handler) - p(direct) for each percentile. Client and fake share the \
         bench process; all three run on the same cores."
    );
    let fake = FakeAnthropic::start(UPSTREAM_KEY)
        .await
        .context("starting the fake Messages API")?;
    let h = start_handler(bin, &fake.base_url()).await?;
    let client = client()?;
    let direct = Target::direct(&fake);
    let through = Target::handler(&h);
    for (mode, stream) in [("buffered", false), ("streaming", true)] {
        let b = body(20, stream);
        for _ in 0..20 {
            timed(&client, &direct, &b).await?;
            timed(&client, &through, &b).await?;
        }
        let (mut d_ttfb, mut d_total, mut h_ttfb, mut h_total) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let (t, a) = timed(&client, &direct, &b).await?;
            d_ttfb.push(t);
            d_total.push(a);
            let (t, a) = timed(&client, &through, &b).await?;
            h_ttfb.push(t);
            h_total.push(a);
        }
        for (what, d, hh) in [("TTFB", &d_ttfb, &h_ttfb), ("total", &d_total, &h_total)] {
            let d = Stats::of(d);
            let hs = Stats::of(hh);
            for (p, dv, hv, target) in [("p50", d.p50, hs.p50, 0.5), ("p99", d.p99, hs.p99, 2.0)] {
                let added = hv - dv;
                s.figures.push(
                    Figure::new(format!("{mode} {what} added, {p}"), ms(added))
                        .baseline(format!("direct {} → via handler {}", ms(dv), ms(hv)))
                        .ratio(times(hv / dv))
                        .target(format!("< {target} ms added"), added < target),
                );
                if stream && what == "total" && p == "p50" && added >= target {
                    // The reply is 27 SSE events, each forwarded on its own as it arrives.
                    s.notes.push(format!(
                        "Why streaming misses the p50 target: the reply is 27 SSE events and \
                         the handler forwards each one as soon as it arrives (no batching: see \
                         Streaming latency), so the added time is paid per event: {:.0} µs per \
                         event at p50 — one extra loopback hop and task wake-up per event, with \
                         the client, the fake and the handler sharing this machine's cores.",
                        added * 1000.0 / 27.0
                    ));
                }
            }
        }
    }
    build_note(&mut s, bin);
    drop(h);
    drop(fake);
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Streaming latency

pub async fn streaming_latency(bin: &HandlerBinary, counts: Counts) -> Result<Section> {
    let mut s = Section::new("Streaming latency");
    let words = counts.stream_words;
    s.method = format!(
        "The fake Messages API holds every SSE event behind a gate (`FakeAnthropic::enable_gate`). \
         For each event the bench opens the gate for exactly one event and times how long it \
         takes until the client has that whole event (up to its blank line): release → fake \
         emits → (handler reads, forwards) → client. {n} streams of {e} events each, measured \
         straight from the fake (baseline) and through `handler::local`; the first event of each \
         stream is not timed (it races the response headers). If the handler held an event \
         back to batch it with the next one, the wait would time out after 5 s and the bench \
         fails.",
        n = counts.latency_streams,
        e = words + 7
    );
    let fake = FakeAnthropic::start(UPSTREAM_KEY)
        .await
        .context("starting the fake Messages API")?;
    let gate = fake.enable_gate();
    let h = start_handler(bin, &fake.base_url()).await?;
    let client = client()?;
    let direct = Target::direct(&fake);
    let through = Target::handler(&h);
    let b = body(words, true);
    let (mut d, mut via) = (Vec::new(), Vec::new());
    let mut extra_events = 0usize;
    for _ in 0..counts.latency_streams {
        extra_events += gated_stream(&client, &direct, &b, &gate, &mut d).await?;
        extra_events += gated_stream(&client, &through, &b, &gate, &mut via).await?;
    }
    let ds = Stats::of(&d);
    let vs = Stats::of(&via);
    s.figures.push(
        Figure::new("emit → receive through the handler, p50", ms(vs.p50))
            .baseline(format!("{} direct", ms(ds.p50)))
            .ratio(times(vs.p50 / ds.p50)),
    );
    s.figures.push(
        Figure::new("emit → receive through the handler, p99", ms(vs.p99))
            .baseline(format!("{} direct", ms(ds.p99)))
            .ratio(times(vs.p99 / ds.p99))
            .target("< 1 ms", vs.p99 < 1.0),
    );
    s.figures.push(Figure::new(
        "added by the handler, p50",
        ms(vs.p50 - ds.p50),
    ));
    s.figures.push(Figure::new(
        "added by the handler, p99",
        ms(vs.p99 - ds.p99),
    ));
    s.figures.push(
        Figure::new(
            "events batched (arrived before their own release)",
            extra_events.to_string(),
        )
        .target("0 (no batching)", extra_events == 0),
    );
    s.notes.push(format!(
        "Events timed: {} direct, {} through the handler.",
        ds.n, vs.n
    ));
    build_note(&mut s, bin);
    drop(h);
    drop(fake);
    Ok(s)
}

/// Runs one gated stream, timing each event after the first; returns how many times more
/// than one event arrived for one release (batching, which a one-event gate makes impossible
/// unless something buffered).
async fn gated_stream(
    client: &reqwest::Client,
    t: &Target,
    body: &str,
    gate: &Gate,
    out: &mut Vec<Duration>,
) -> Result<usize> {
    let req = t.request(client, body).send();
    let pending = tokio::spawn(req);
    gate.release(1);
    let mut resp = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .context("no response headers within 10 s")?
        .context("the request task failed")?
        .with_context(|| format!("POST {}", t.url))?;
    if !resp.status().is_success() {
        bail!("POST {} answered {}", t.url, resp.status());
    }
    let mut buf = Vec::<u8>::new();
    let mut seen = 0usize;
    let mut batched = 0usize;
    // The first event.
    read_events(&mut resp, &mut buf, 1).await?;
    seen += 1;
    loop {
        if has_message_stop(&buf) {
            break;
        }
        let start = Instant::now();
        gate.release(1);
        let now = read_events(&mut resp, &mut buf, seen + 1).await?;
        out.push(start.elapsed());
        if now > seen + 1 {
            batched += 1;
        }
        seen = now;
    }
    while resp
        .chunk()
        .await
        .context("reading the end of the stream")?
        .is_some()
    {}
    Ok(batched)
}

fn count_events(buf: &[u8]) -> usize {
    buf.windows(2).filter(|w| w == b"\n\n").count()
}

fn has_message_stop(buf: &[u8]) -> bool {
    buf.windows(b"event: message_stop".len())
        .any(|w| w == b"event: message_stop")
}

/// Reads until at least `want` whole events are in `buf`; returns how many there are.
async fn read_events(
    resp: &mut reqwest::Response,
    buf: &mut Vec<u8>,
    want: usize,
) -> Result<usize> {
    loop {
        let n = count_events(buf);
        if n >= want {
            return Ok(n);
        }
        match tokio::time::timeout(Duration::from_secs(5), resp.chunk()).await {
            Err(_) => bail!(
                "event {want} did not arrive within 5 s of the upstream emitting it (held back or batched)"
            ),
            Ok(r) => match r.context("reading the stream")? {
                Some(c) => buf.extend_from_slice(&c),
                None => bail!("the stream ended after {n} events, before event {want}"),
            },
        }
    }
}
