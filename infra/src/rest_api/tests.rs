use super::*;

fn spec() -> Spec {
    Spec {
        name: "claude-proxy-dev".into(),
        stack: "dev".into(),
        partition: "aws".into(),
        region: "us-east-1".into(),
        function_arn: Late::Known(
            "arn:aws:lambda:us-east-1:123456789012:function:claude-proxy-dev".into(),
        ),
        timeout_ms: 120_000,
    }
}

fn method(spec: &Spec, transfer_mode: Option<&str>) -> Method {
    Method {
        http_method: "ANY".into(),
        authorization_type: "NONE".into(),
        api_key_required: true,
        integration: Some(Integration {
            integration_type: "AWS_PROXY".into(),
            http_method: "POST".into(),
            uri: spec.uri(),
            timeout_ms: spec.timeout_ms,
            transfer_mode: transfer_mode.map(str::to_string),
        }),
    }
}

fn state(spec: &Spec) -> State {
    State {
        id: "a1".into(),
        name: spec.name.clone(),
        tags: names::tags_at_creation("dev", "2026-01-01T00:00:00Z"),
        endpoint_types: vec!["REGIONAL".into()],
        api_key_source: Some("HEADER".into()),
        resources: vec![
            Resource {
                id: "r0".into(),
                path: "/".into(),
                parent_id: None,
                methods: vec![method(spec, Some("STREAM"))],
            },
            Resource {
                id: "r1".into(),
                path: "/{proxy+}".into(),
                parent_id: Some("r0".into()),
                methods: vec![method(spec, Some("STREAM"))],
            },
        ],
        stages: vec![Stage {
            name: STAGE.into(),
            deployment_id: Some("d1".into()),
            deployment_description: Some(spec.fingerprint()),
            tags: names::tags_at_creation("dev", "2026-01-01T00:00:00Z"),
        }],
    }
}

fn changed_fields(spec: &Spec, a: &State) -> Vec<String> {
    match diff(Some(spec), std::slice::from_ref(a)).as_slice() {
        [] => Vec::new(),
        [(_, Change::Update { fields })] => fields.iter().map(|f| f.field.clone()).collect(),
        other => panic!("unexpected diff {other:?}"),
    }
}

#[test]
fn names_uri_and_arns() {
    let s = spec();
    assert_eq!(
        s.uri(),
        "arn:aws:apigateway:us-east-1:lambda:path/2021-11-15/functions/arn:aws:lambda:us-east-1:123456789012:function:claude-proxy-dev/response-streaming-invocations"
    );
    assert_eq!(
        source_arn("aws-us-gov", "us-gov-west-1", "1", "abc"),
        "arn:aws-us-gov:execute-api:us-gov-west-1:1:abc/live/*/*"
    );
    assert_eq!(
        stage_url("aws", "eu-west-1", "abc"),
        "https://abc.execute-api.eu-west-1.amazonaws.com/live"
    );
    assert_eq!(
        stage_url("aws-cn", "cn-north-1", "abc"),
        "https://abc.execute-api.cn-north-1.amazonaws.com.cn/live"
    );
}

#[test]
fn a_converged_api_has_no_changes_and_a_missing_one_is_created() {
    let s = spec();
    assert!(changed_fields(&s, &state(&s)).is_empty());
    let created = diff(Some(&s), &[]);
    let [(None, Change::Create { settings })] = created.as_slice() else {
        panic!("{created:?}")
    };
    let text = format!("{settings:?}");
    assert!(text.contains("responseTransferMode STREAM") && text.contains("timeout 120 s"));
    // Teardown, and extra copies, delete.
    let a = state(&s);
    assert_eq!(
        diff(None, std::slice::from_ref(&a)),
        vec![(Some("a1".into()), Change::Delete)]
    );
    let mut b = a.clone();
    b.id = "a2".into();
    assert_eq!(
        diff(Some(&s), &[a, b])[0],
        (Some("a2".into()), Change::Delete)
    );
}

#[test]
fn only_a_missing_transfer_mode_is_tolerated() {
    // moto drops responseTransferMode: absent is accepted.
    let s = spec();
    let mut a = state(&s);
    for r in &mut a.resources {
        r.methods = vec![method(&s, None)];
    }
    assert!(changed_fields(&s, &a).is_empty());
    // A buffered integration is a difference.
    a.resources[1].methods = vec![method(&s, Some("BUFFERED"))];
    assert_eq!(changed_fields(&s, &a), ["methods /{proxy+}"]);
}

#[test]
fn method_integration_stage_and_tag_drift_are_found() {
    let s = spec();
    let mut a = state(&s);
    a.resources[0].methods[0].api_key_required = false;
    assert_eq!(changed_fields(&s, &a), ["methods /"]);

    let mut a = state(&s);
    let longer = Spec {
        timeout_ms: 300_000,
        ..spec()
    };
    // The integration's timeout and the deployed configuration both differ.
    assert_eq!(
        changed_fields(&longer, &a),
        ["methods /", "methods /{proxy+}", "stages"]
    );
    // A deploy interrupted after the methods, before the deployment: the stage still
    // serves the old configuration.
    a.stages[0].deployment_description = Some("claude-proxy: something older".into());
    assert_eq!(changed_fields(&s, &a), ["stages"]);
    a.stages.clear();
    assert_eq!(changed_fields(&s, &a), ["stages"]);

    let mut a = state(&s);
    a.resources.push(Resource {
        id: "r2".into(),
        path: "/extra".into(),
        parent_id: Some("r0".into()),
        methods: Vec::new(),
    });
    a.tags.clear();
    a.api_key_source = Some("AUTHORIZER".into());
    assert_eq!(
        changed_fields(&s, &a),
        ["resources", "api_key_source", "tags"]
    );
}

#[test]
fn the_spec_follows_the_config() {
    let names = names::Names::new("dev");
    let refs = Refs {
        partition: "aws".into(),
        region: "us-east-1".into(),
        account_id: "123456789012".into(),
        secret_arn: Late::Known("s".into()),
        role_arn: Late::Known("r".into()),
        function_arn: Late::Known("f".into()),
        alias_arn: Late::Known("f:live".into()),
        api_source_arn: Late::Known("x".into()),
        rest_api_id: Late::after(Output::RestApiId),
        rest_source_arn: Late::after(Output::RestApiSourceArn),
        layer_arn: Late::Known("l".into()),
        repository_uri: Late::Known("u".into()),
        image_uri: None,
    };
    let mut config = crate::config::StackConfig::parse("[api]\nkind = \"rest\"\n").unwrap();
    let stack = |c: &crate::config::StackConfig| crate::desired::StackSpec {
        config: c.clone(),
        reserved_concurrency: None,
        artifact: None,
        image: None,
        secret: Default::default(),
        created_at: "t".into(),
        commit: None,
        smoke_test: None,
    };
    let s = spec_for(&names, &stack(&config), &refs).expect("a REST API");
    assert_eq!(s.timeout_ms, 120_000);
    config.function.timeout_seconds = 900;
    assert_eq!(
        spec_for(&names, &stack(&config), &refs).unwrap().timeout_ms,
        MAX_TIMEOUT_MS
    );
    config.api.kind = Some(crate::config::ApiKind::Http);
    assert!(spec_for(&names, &stack(&config), &refs).is_none());
}

fn spec_for(n: &names::Names, s: &StackSpec, r: &Refs) -> Option<Spec> {
    super::spec(n, s, r)
}
