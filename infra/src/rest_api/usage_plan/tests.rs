use super::*;
use crate::credentials::GatewayApiKey;

fn spec() -> Spec {
    Spec {
        name: "claude-proxy-dev".into(),
        key_name: "claude-proxy-dev-default".into(),
        stack: "dev".into(),
        api_id: Late::Known("a1".into()),
        rate_limit: 5.0,
        burst_limit: 10,
        quota: Some((5000, QuotaPeriod::Day)),
        rotate_key: false,
        caller_keys: Some(["k9".to_string()].into()),
        caller_plans: Some(Default::default()),
    }
}

fn tags() -> BTreeMap<String, String> {
    names::tags_at_creation("dev", "2026-01-01T00:00:00Z")
}

fn converged() -> State {
    State {
        plans: vec![PlanState {
            id: "p1".into(),
            name: "claude-proxy-dev".into(),
            tags: tags(),
            api_stages: vec!["a1:live".into()],
            rate_limit: Some(5.0),
            burst_limit: Some(10),
            quota: Some((5000, "DAY".into())),
            key_ids: vec!["k1".into()],
        }],
        keys: vec![KeyState {
            id: "k1".into(),
            name: "claude-proxy-dev-default".into(),
            enabled: true,
            tags: tags(),
        }],
    }
}

fn fields_of(spec: &Spec, a: &State) -> Vec<String> {
    match diff(Some(spec), a) {
        None => Vec::new(),
        Some(Change::Update { fields }) => fields.into_iter().map(|f| f.field).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn created_converged_and_deleted() {
    let s = spec();
    let Some(Change::Create { settings }) = diff(Some(&s), &State::default()) else {
        panic!()
    };
    let text = format!("{settings:?}");
    assert!(
        text.contains("live of the REST API a1") && text.contains("5000 per DAY"),
        "{text}"
    );
    assert!(text.contains("shown once"), "{text}");
    assert!(fields_of(&s, &converged()).is_empty());
    assert_eq!(diff(None, &converged()), Some(Change::Delete));
    assert_eq!(diff(None, &State::default()), None);
}

#[test]
fn limits_stage_and_key_drift_are_found() {
    let s = spec();
    let mut a = converged();
    a.plans[0].rate_limit = Some(1.0);
    a.plans[0].quota = None;
    a.plans[0].api_stages = vec!["old:live".into()];
    assert_eq!(fields_of(&s, &a), ["api_stages", "throttle", "quota"]);

    // A key that never joined the plan was never shown: it is replaced.
    let mut a = converged();
    a.plans[0].key_ids.clear();
    assert_eq!(fields_of(&s, &a), ["api_key"]);
    let mut a = converged();
    a.keys.clear();
    assert_eq!(fields_of(&s, &a), ["api_key"]);
    let mut a = converged();
    a.keys[0].enabled = false;
    assert_eq!(fields_of(&s, &a), ["api_key.enabled"]);
    // --rotate-token makes a new key.
    let rotate = Spec {
        rotate_key: true,
        ..spec()
    };
    assert_eq!(fields_of(&rotate, &converged()), ["api_key"]);
    // No quota wanted: the plan's goes.
    let unlimited = Spec {
        quota: None,
        ..spec()
    };
    assert_eq!(fields_of(&unlimited, &converged()), ["quota"]);
    // A second plan or key of the stack is deleted.
    let mut a = converged();
    a.keys.push(KeyState {
        id: "k2".into(),
        name: "claude-proxy-dev-default".into(),
        enabled: true,
        tags: tags(),
    });
    assert_eq!(fields_of(&s, &a), ["extra"]);
}

#[test]
fn named_callers_keys_stay_members_and_unrecorded_ones_go() {
    let s = spec();
    let alice = KeyState {
        id: "k9".into(),
        name: "claude-proxy-dev-alice".into(),
        enabled: true,
        tags: tags(),
    };
    // The secret records k9: it stays, and joins the plan when it is not a member.
    let mut a = converged();
    a.keys.push(alice.clone());
    assert_eq!(fields_of(&s, &a), ["caller_api_keys"]);
    a.plans[0].key_ids.push("k9".into());
    assert_eq!(fields_of(&s, &a), Vec::<String>::new());
    // Not recorded (a `callers add` killed before it wrote the secret): deleted.
    let unrecorded = Spec {
        caller_keys: Some(Default::default()),
        caller_plans: Some(Default::default()),
        ..spec()
    };
    assert_eq!(fields_of(&unrecorded, &a), ["extra"]);
    // The secret unreadable: nothing is deleted.
    let unknown = Spec {
        caller_keys: None,
        caller_plans: None,
        ..spec()
    };
    assert_eq!(fields_of(&unknown, &a), Vec::<String>::new());
    // The default caller's key is this step's, whatever the secret says.
    let mut with_default = spec();
    with_default.caller_keys = Some(["k1".to_string()].into());
    assert!(!with_default.is_caller_key(&converged().keys[0]));
}

#[test]
fn caller_plans_are_kept_for_callers_with_their_own_numbers_and_deleted_otherwise() {
    use crate::callers::Throttle;
    let mut caller_tags = tags();
    caller_tags.insert(crate::names::TAG_CALLER.into(), "bob".into());
    let own = Throttle {
        rate_limit: 1.0,
        burst_limit: 2,
        quota_limit: 100,
        quota_period: QuotaPeriod::Week,
    };
    let s = Spec {
        caller_plans: Some([("bob".to_string(), own)].into()),
        ..spec()
    };
    let mut a = converged();
    a.keys.push(KeyState {
        id: "k9".into(),
        name: "claude-proxy-dev-bob".into(),
        enabled: true,
        tags: caller_tags.clone(),
    });
    a.plans.push(PlanState {
        id: "p2".into(),
        name: "claude-proxy-dev-bob".into(),
        tags: caller_tags,
        api_stages: vec!["a1:live".into()],
        rate_limit: Some(1.0),
        burst_limit: Some(2),
        quota: Some((100, "WEEK".into())),
        key_ids: vec!["k9".into()],
    });
    // Bob's key sits in his own plan, with his numbers: nothing to do.
    assert_eq!(a.shared().map(|p| p.id.as_str()), Some("p1"));
    assert_eq!(fields_of(&s, &a), Vec::<String>::new());
    // His numbers changed in the secret: his plan follows.
    let changed = Spec {
        caller_plans: Some(
            [(
                "bob".to_string(),
                Throttle {
                    rate_limit: 3.0,
                    burst_limit: 6,
                    ..own
                },
            )]
            .into(),
        ),
        ..spec()
    };
    assert_eq!(fields_of(&changed, &a), ["caller_plan.bob"]);
    // Bob has no own numbers any more (or is gone): his plan goes, his key joins the shared.
    let shared_only = Spec {
        caller_plans: Some(Default::default()),
        ..spec()
    };
    assert_eq!(fields_of(&shared_only, &a), ["caller_api_keys", "extra"]);
    // The secret unreadable: his plan stays as it is.
    let unknown = Spec {
        caller_plans: None,
        ..spec()
    };
    assert_eq!(fields_of(&unknown, &a), Vec::<String>::new());
}

#[test]
fn generated_keys_are_long_alphanumeric_and_redacted() {
    let a = GatewayApiKey::generate();
    let b = GatewayApiKey::generate();
    assert_ne!(a.expose(), b.expose());
    assert_eq!(a.expose().len(), 40);
    assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(!format!("{a:?} {a}").contains(a.expose()));
}
