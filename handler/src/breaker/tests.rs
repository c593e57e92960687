use super::*;

fn settings() -> BreakerSettings {
    BreakerSettings {
        failures: 3,
        window: Duration::from_secs(10),
        cool_down: Duration::from_secs(30),
    }
}

fn at(t0: Instant, secs: u64) -> Instant {
    t0 + Duration::from_secs(secs)
}

#[test]
fn consecutive_failures_within_the_window_open_it() {
    let b = Breaker::new(settings());
    let t0 = Instant::now();
    assert_eq!(b.admit(t0), Admission::Primary);
    assert_eq!(b.record(Admission::Primary, false, at(t0, 0)), None);
    assert_eq!(b.record(Admission::Primary, false, at(t0, 5)), None);
    assert!(!b.is_open());
    // The third, 10 s after the second (each gap within the window, though the streak spans
    // 15 s: slow failures, such as hangs, still open it).
    assert_eq!(
        b.record(Admission::Primary, false, at(t0, 15)),
        Some(Transition::Opened { failures: 3 })
    );
    assert!(b.is_open());
    // For the cool-down, everything goes to the fallback.
    for s in [15, 20, 44] {
        assert_eq!(b.admit(at(t0, s)), Admission::Fallback, "{s}");
    }
}

#[test]
fn a_success_or_a_long_gap_ends_the_streak() {
    let b = Breaker::new(settings());
    let t0 = Instant::now();
    b.record(Admission::Primary, false, at(t0, 0));
    b.record(Admission::Primary, false, at(t0, 1));
    assert_eq!(b.record(Admission::Primary, true, at(t0, 2)), None);
    b.record(Admission::Primary, false, at(t0, 3));
    b.record(Admission::Primary, false, at(t0, 4));
    assert!(!b.is_open(), "a success in between: only two in a row");
    // More than the window after the last failure: a new streak of one.
    assert_eq!(b.record(Admission::Primary, false, at(t0, 15)), None);
    assert_eq!(b.record(Admission::Primary, false, at(t0, 16)), None);
    assert!(!b.is_open());
    assert_eq!(
        b.record(Admission::Primary, false, at(t0, 17)),
        Some(Transition::Opened { failures: 3 })
    );
}

#[test]
fn after_the_cool_down_one_probe_closes_or_reopens_it() {
    let b = Breaker::new(settings());
    let t0 = Instant::now();
    for s in 0..3 {
        b.record(Admission::Primary, false, at(t0, s));
    }
    // Opened at 2 s; the cool-down ends at 32 s.
    assert_eq!(b.admit(at(t0, 31)), Admission::Fallback);
    assert_eq!(b.admit(at(t0, 32)), Admission::Probe);
    // Only one probe at a time: the others keep going to the fallback.
    assert_eq!(b.admit(at(t0, 33)), Admission::Fallback);
    assert_eq!(b.admit(at(t0, 90)), Admission::Fallback);
    // The probe failed: another cool-down from then.
    assert_eq!(
        b.record(Admission::Probe, false, at(t0, 34)),
        Some(Transition::Reopened)
    );
    assert_eq!(b.admit(at(t0, 63)), Admission::Fallback);
    assert_eq!(b.admit(at(t0, 64)), Admission::Probe);
    // The probe succeeded: closed, the primary gets everything (with its retries) again.
    assert_eq!(
        b.record(Admission::Probe, true, at(t0, 65)),
        Some(Transition::Closed)
    );
    assert!(!b.is_open());
    assert_eq!(b.admit(at(t0, 65)), Admission::Primary);
    // And it takes a full streak to open it again.
    assert_eq!(b.record(Admission::Primary, false, at(t0, 66)), None);
    assert_eq!(b.record(Admission::Primary, false, at(t0, 67)), None);
    assert!(!b.is_open());
}

#[test]
fn an_abandoned_probe_lets_the_next_request_probe() {
    let b = Breaker::new(settings());
    let t0 = Instant::now();
    for s in 0..3 {
        b.record(Admission::Primary, false, at(t0, s));
    }
    assert_eq!(b.admit(at(t0, 40)), Admission::Probe);
    b.abandon_probe(at(t0, 41));
    assert!(b.is_open());
    assert_eq!(b.admit(at(t0, 41)), Admission::Probe);
    // abandon_probe outside a probe changes nothing.
    b.record(Admission::Probe, true, at(t0, 42));
    b.abandon_probe(at(t0, 43));
    assert!(!b.is_open());
}

#[test]
fn answers_of_requests_only_the_primary_could_serve_count_too() {
    let b = Breaker::new(settings());
    let t0 = Instant::now();
    for s in 0..3 {
        b.record(Admission::Primary, false, at(t0, s));
    }
    // While open, a failure of such a request does not extend the cool-down ...
    assert_eq!(b.record(Admission::Primary, false, at(t0, 20)), None);
    assert_eq!(b.admit(at(t0, 32)), Admission::Probe);
    // ... and its answer (here while the probe runs) closes the breaker.
    assert_eq!(
        b.record(Admission::Primary, true, at(t0, 33)),
        Some(Transition::Closed)
    );
    // The probe's own failure afterwards starts a new streak, nothing more.
    assert_eq!(b.record(Admission::Probe, false, at(t0, 34)), None);
    assert!(!b.is_open());
}

#[test]
fn one_failure_is_enough_when_so_configured() {
    let b = Breaker::new(BreakerSettings {
        failures: 1,
        ..settings()
    });
    let t0 = Instant::now();
    assert_eq!(
        b.record(Admission::Primary, false, t0),
        Some(Transition::Opened { failures: 1 })
    );
}

#[test]
fn settings_come_from_the_environment() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(
        BreakerSettings::from_lookup(&env(&[])).unwrap(),
        BreakerSettings::default()
    );
    let s = BreakerSettings::from_lookup(&env(&[
        ("FAILOVER_BREAKER_FAILURES", "5"),
        ("FAILOVER_BREAKER_WINDOW_MS", "2000"),
        ("FAILOVER_COOL_DOWN_MS", "750"),
    ]))
    .unwrap();
    assert_eq!(
        s,
        BreakerSettings {
            failures: 5,
            window: Duration::from_secs(2),
            cool_down: Duration::from_millis(750),
        }
    );
    for (name, value) in [
        ("FAILOVER_BREAKER_FAILURES", "0"),
        ("FAILOVER_BREAKER_WINDOW_MS", "soon"),
        ("FAILOVER_COOL_DOWN_MS", "-1"),
    ] {
        let pairs: &'static [(&'static str, &'static str)] =
            Box::leak(vec![(name, value)].into_boxed_slice());
        let e = BreakerSettings::from_lookup(&env(pairs))
            .unwrap_err()
            .to_string();
        assert!(e.contains(name), "{name}={value}: {e}");
    }
}
