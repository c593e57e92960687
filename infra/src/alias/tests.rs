use super::*;
use crate::config::Strategy;

fn state(version: &str, weights: &[(&str, f64)]) -> State {
    State {
        version: version.into(),
        weights: weights.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
        revision_id: None,
    }
}

fn spec(version: &str, strategy: Strategy) -> Spec {
    Spec {
        function: "f".into(),
        version: Late::Known(version.into()),
        release: ReleaseSection {
            strategy,
            ..Default::default()
        },
        smoke_test: None,
    }
}

#[test]
fn routing_shows_every_share() {
    let s = state("2", &[("3", 0.1)]);
    assert_eq!(s.routing(), "2=90% 3=10%");
    assert_eq!(s.percent_of("3"), 10);
    assert_eq!(s.percent_of("2"), 90);
    assert_eq!(s.percent_of("4"), 0);
}

#[test]
fn the_diff_shows_versions_weights_and_the_strategy() {
    assert_eq!(
        diff(Some(&spec("2", Strategy::Canary)), Some(&state("2", &[]))),
        None
    );
    let Some(Change::Update { fields }) =
        diff(Some(&spec("3", Strategy::Canary)), Some(&state("2", &[])))
    else {
        panic!()
    };
    let text: Vec<String> = fields
        .iter()
        .map(|f| format!("{}: {} -> {}", f.field, f.from, f.to))
        .collect();
    assert_eq!(text[0], "version: 2 -> 3");
    assert_eq!(text[1], "routing: 2=100% -> 3=100%");
    assert!(text[2].contains("canary: 10% for 300 s"), "{text:?}");
    // An interrupted canary: weights on the new version show plainly.
    let Some(Change::Update { fields }) = diff(
        Some(&spec("3", Strategy::Canary)),
        Some(&state("2", &[("3", 0.1)])),
    ) else {
        panic!()
    };
    assert_eq!(fields[1].from, "2=90% 3=10%");
    // Weights left on the version it already points to: cleared, no release.
    let Some(Change::Update { fields }) = diff(
        Some(&spec("2", Strategy::Canary)),
        Some(&state("2", &[("3", 0.1)])),
    ) else {
        panic!()
    };
    assert_eq!(fields.len(), 1);
    assert!(matches!(
        diff(None, Some(&state("2", &[]))),
        Some(Change::Delete)
    ));
}
