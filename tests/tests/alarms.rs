//! `[alarms]` against moto (SNS) and the proxy's CloudWatch stand-in: the topic and the three
//! alarms created with the stack's tags, read back with plain clients, changed (threshold,
//! e-mail, a lost tag), removed with the section, torn down; and the real CLI deploying a
//! stack with `[alarms]`, its plan stating the alarm beside the worst case.

use aws_sdk_cloudwatch::types::StateValue;
use infra::config::StackConfig;
use infra::{Change, Desired, Kind, SecretInput};
use stand_ins::iam_actions::iam_action;
use stand_ins::stack_support::*;
use std::collections::{BTreeMap, BTreeSet};

fn with_alarms(stack: &str, alarms: &str) -> Desired {
    let text = format!("[concurrency]\nreserved = 5\n{alarms}");
    Desired::new(
        StackConfig::parse(&text)
            .unwrap()
            .with_overrides(&overrides(stack))
            .unwrap(),
        Some(&artifact()),
        SecretInput {
            anthropic_api_key: Some(infra::ApiKey::new(KEY)),
            rotate_token: false,
        },
    )
    .unwrap()
}

async fn apply(e: &Env, d: &Desired) -> infra::Plan {
    let p = plan_for(&e.aws, d).await;
    Box::pin(infra::apply(&e.aws, &p, d, &infra::Silent))
        .await
        .unwrap();
    let again = plan_for(&e.aws, d).await;
    assert!(again.is_empty(), "not converged:\n{again}");
    p
}

/// The stack's alarms as CloudWatch describes them (name → threshold, metric, actions, tags).
async fn read_alarms(
    e: &Env,
    stack: &str,
) -> BTreeMap<String, (f64, String, Vec<String>, BTreeMap<String, String>)> {
    let cw = aws_sdk_cloudwatch::Client::new(&sdk_config_in(&e.proxy.endpoint_url(), REGION).await);
    let out = cw
        .describe_alarms()
        .alarm_name_prefix(format!("claude-proxy-{stack}-"))
        .send()
        .await
        .unwrap();
    let mut found = BTreeMap::new();
    for a in out.metric_alarms() {
        let tags = cw
            .list_tags_for_resource()
            .resource_arn(a.alarm_arn().unwrap())
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
            .collect();
        assert_eq!(a.namespace(), Some("ClaudeProxy"));
        assert_eq!(a.dimensions().len(), 1);
        assert_eq!(a.dimensions()[0].name(), Some("function"));
        assert_eq!(
            a.dimensions()[0].value(),
            Some(format!("claude-proxy-{stack}").as_str())
        );
        assert_eq!(a.statistic().map(|s| s.as_str()), Some("Sum"));
        assert_eq!(a.period(), Some(600));
        assert_ne!(a.state_value(), Some(&StateValue::Alarm));
        found.insert(
            a.alarm_name().unwrap().to_string(),
            (
                a.threshold().unwrap(),
                a.metric_name().unwrap().to_string(),
                a.alarm_actions().to_vec(),
                tags,
            ),
        );
    }
    found
}

/// The topic's ARN, tags and e-mail subscriptions, read from moto directly.
async fn read_topic(
    e: &Env,
    stack: &str,
) -> Option<(String, BTreeMap<String, String>, Vec<String>)> {
    let sns = aws_sdk_sns::Client::new(&e.direct);
    let topics = sns.list_topics().send().await.unwrap();
    let arn = topics
        .topics()
        .iter()
        .filter_map(|t| t.topic_arn())
        .find(|a| a.ends_with(&format!(":claude-proxy-{stack}-alarms")))?
        .to_string();
    let tags = sns
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    let subs = sns
        .list_subscriptions_by_topic()
        .topic_arn(&arn)
        .send()
        .await
        .unwrap()
        .subscriptions()
        .iter()
        .filter(|s| s.protocol() == Some("email"))
        .map(|s| s.endpoint().unwrap().to_string())
        .collect();
    Some((arn, tags, subs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_are_created_read_back_changed_and_torn_down() {
    Box::pin(body()).await
}

async fn body() -> () {
    let e = env().await;
    let d = with_alarms(
        "alm",
        "[alarms]\nperiod_seconds = 600\noutput_tokens = 500000\nerrors_5xx = 3\nthrottles = 7\nemail = \"ops@example.com\"\n",
    );
    let p = apply(&e, &d).await;
    let text = p.to_string();
    assert!(
        text.contains("+ SNS topic claude-proxy-alm-alarms"),
        "{text}"
    );
    assert!(
        text.contains("+ CloudWatch alarm claude-proxy-alm-output-tokens"),
        "{text}"
    );
    // The threshold in dollars beside the worst case: 500000 output tokens of the default
    // model (claude-haiku-4-5, $5/MTok) = $2.50 per 600 s, $15.00/hour.
    let worst = text.find("worst case: about $").expect(&text);
    let alarm = text
        .find("spend alarm: fires at 500000 output tokens in 600 s (about $2.50 at claude-haiku-4-5 output $5/MTok, $15.00/hour)")
        .expect(&text);
    assert!(alarm > worst, "{text}");
    assert!(
        text.contains("SNS sends ops@example.com a confirmation e-mail"),
        "{text}"
    );
    let topic_at = p
        .changes
        .iter()
        .position(|c| c.kind == Kind::Topic)
        .unwrap();
    let function_at = p
        .changes
        .iter()
        .position(|c| c.kind == Kind::Function)
        .unwrap();
    assert!(p
        .changes
        .iter()
        .enumerate()
        .all(|(i, c)| c.kind != Kind::Alarm || i > topic_at));
    assert!(topic_at > function_at);

    let (topic_arn, tags, emails) = read_topic(&e, "alm").await.expect("topic");
    assert_eq!(tags.get("stack").map(String::as_str), Some("alm"));
    assert_eq!(
        tags.get("managed-by").map(String::as_str),
        Some("claude-lambda-toolkit")
    );
    assert!(tags.contains_key("created-at"));
    assert_eq!(emails, ["ops@example.com"]);
    let alarms = read_alarms(&e, "alm").await;
    let expect = [
        ("claude-proxy-alm-errors-5xx", 3.0, "Errors5xx"),
        ("claude-proxy-alm-output-tokens", 500000.0, "OutputTokens"),
        ("claude-proxy-alm-throttles", 7.0, "Throttles"),
    ];
    assert_eq!(alarms.len(), 3, "{alarms:?}");
    for (name, threshold, metric) in expect {
        let (t, m, actions, tags) = &alarms[name];
        assert_eq!((*t, m.as_str()), (threshold, metric), "{name}");
        assert_eq!(actions, std::slice::from_ref(&topic_arn), "{name}");
        assert_eq!(tags.get("stack").map(String::as_str), Some("alm"), "{name}");
        assert!(tags.contains_key("created-at"), "{name}");
    }

    // Changed: the token threshold and the address; exactly those change.
    let d2 = with_alarms(
        "alm",
        "[alarms]\nperiod_seconds = 600\noutput_tokens = 2000000\nerrors_5xx = 3\nthrottles = 7\nemail = \"oncall@example.com\"\n",
    );
    let p2 = plan_for(&e.aws, &d2).await;
    let updates: Vec<(Kind, &str, Vec<&str>)> = p2
        .changes
        .iter()
        .map(|c| match &c.change {
            Change::Update { fields } => (
                c.kind,
                c.name.as_str(),
                fields.iter().map(|f| f.field.as_str()).collect(),
            ),
            other => panic!("{other:?} in\n{p2}"),
        })
        .collect();
    assert_eq!(
        updates,
        [
            (Kind::Topic, "claude-proxy-alm-alarms", vec!["email"]),
            (
                Kind::Alarm,
                "claude-proxy-alm-output-tokens",
                vec!["threshold", "description"]
            ),
        ],
        "{p2}"
    );
    apply(&e, &d2).await;
    let alarms = read_alarms(&e, "alm").await;
    assert_eq!(alarms["claude-proxy-alm-output-tokens"].0, 2000000.0);
    // moto confirms e-mail subscriptions at once, so the old one is unsubscribed.
    assert_eq!(
        read_topic(&e, "alm").await.unwrap().2,
        ["oncall@example.com"]
    );

    // A tag lost by hand is put back (PutMetricAlarm does not tag an existing alarm).
    let arn = alarms_arn(&e, "claude-proxy-alm-throttles");
    e.proxy.with_cloudwatch(|cw| {
        for a in cw.alarms.alarms.values_mut() {
            if a.arn == arn {
                a.tags.remove("stack");
            }
        }
    });
    let p3 = plan_for(&e.aws, &d2).await;
    assert_eq!(p3.changes.len(), 1, "{p3}");
    assert_eq!(
        p3.changes[0].change,
        Change::Update {
            fields: vec![infra::FieldChange::new("tags", "", "stack=alm")]
        }
    );
    apply(&e, &d2).await;
    assert_eq!(
        read_alarms(&e, "alm").await["claude-proxy-alm-throttles"]
            .3
            .get("stack")
            .map(String::as_str),
        Some("alm")
    );

    // Without [alarms]: the alarms go, then the topic.
    let d3 = with_alarms("alm", "");
    let p4 = apply(&e, &d3).await;
    let kinds: Vec<(Kind, bool)> = p4
        .changes
        .iter()
        .map(|c| (c.kind, c.change == Change::Delete))
        .collect();
    assert_eq!(
        kinds,
        [
            (Kind::Alarm, true),
            (Kind::Alarm, true),
            (Kind::Alarm, true),
            (Kind::Topic, true)
        ],
        "{p4}"
    );
    assert!(alarms_of(&e.proxy, "alm").is_empty());
    assert!(read_topic(&e, "alm").await.is_none());

    // Back, then torn down: nothing left, alarms included.
    apply(&e, &d).await;
    assert_eq!(alarms_of(&e.proxy, "alm").len(), 3);
    // `teardown --older-than` finds the stack by its topic's tags too.
    let found = infra::discover::find_stacks(&e.aws).await.unwrap();
    let alm = found.iter().find(|f| f.stack == "alm").expect("found");
    assert!(
        alm.resources
            .iter()
            .any(|r| r == "SNS topic claude-proxy-alm-alarms"),
        "{alm:?}"
    );
    let report = infra::teardown(&e.aws, "alm", &infra::Silent)
        .await
        .unwrap();
    let text = report.to_string();
    assert!(
        text.contains("delete CloudWatch alarm claude-proxy-alm-output-tokens"),
        "{text}"
    );
    assert!(
        text.contains("delete SNS topic claude-proxy-alm-alarms"),
        "{text}"
    );
    assert!(alarms_of(&e.proxy, "alm").is_empty(), "{text}");
    assert_nothing_left(&e.direct, "alm").await;

    // Every call above (create, change, retag, remove, teardown) is in the deployer policy.
    let policy: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/deployer-policy.json")).unwrap();
    let allowed: BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| as_strings(&s["Action"]))
        .collect();
    let needed: BTreeSet<String> = e.proxy.calls().iter().filter_map(iam_action).collect();
    for a in [
        "cloudwatch:PutMetricAlarm",
        "cloudwatch:DescribeAlarms",
        "cloudwatch:DeleteAlarms",
        "cloudwatch:TagResource",
        "sns:CreateTopic",
        "sns:Subscribe",
        "sns:Unsubscribe",
        "sns:DeleteTopic",
        "sns:ListTopics",
    ] {
        assert!(needed.contains(a), "{a} not called: {needed:?}");
    }
    let missing: Vec<&String> = needed.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "docs/deployer-policy.json lacks {missing:?}"
    );
}

fn alarms_arn(e: &Env, name: &str) -> String {
    e.proxy.with_cloudwatch(|cw| {
        cw.alarms
            .alarms
            .values()
            .find(|a| a.name == name)
            .map(|a| a.arn.clone())
            .unwrap()
    })
}

#[test]
fn bad_alarm_settings_are_refused_with_what_to_do() {
    for (text, says) in [
        ("[alarms]\nperiod_seconds = 90\n", "multiple of 60"),
        ("[alarms]\noutput_tokens = 0\n", "alarms.output_tokens = 0"),
        (
            "[alarms]\nemail = \"not-an-address\"\n",
            "not an e-mail address",
        ),
        ("[alarms]\nthreshold = 5\n", "unknown field"),
    ] {
        let err = format!("{:#}", StackConfig::parse(text).unwrap_err());
        assert!(err.contains(says), "{text}: {err}");
    }
    let c = StackConfig::parse("[alarms]\n").unwrap();
    assert_eq!(c.alarms.unwrap().output_tokens, 1_000_000);
    assert!(StackConfig::parse("").unwrap().alarms.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_deploys_and_tears_down_a_stack_with_alarms() {
    let e = env().await;
    let cli = Cli::new().await;
    cli.stack_toml("[concurrency]\nreserved = 2\n[alarms]\noutput_tokens = 100000\n");
    let endpoint = e.proxy.endpoint_url();
    let r = cli
        .run(
            &endpoint,
            &[
                "plan",
                "--stack",
                "alcli",
                "--http-api",
                "--bootstrap",
                cli.bootstrap.to_str().unwrap(),
            ],
        )
        .await;
    assert!(
        r.stdout
            .contains("spend alarm: fires at 100000 output tokens in 3600 s"),
        "{r}"
    );
    assert!(r.stdout.contains("worst case: about $"), "{r}");
    let r = cli.run(&endpoint, &strs(&cli.deploy_args("alcli"))).await;
    assert_eq!(r.code, Some(0), "{r}");
    let mut names = alarms_of(&e.proxy, "alcli");
    names.sort();
    assert_eq!(
        names,
        [
            "claude-proxy-alcli-errors-5xx",
            "claude-proxy-alcli-output-tokens",
            "claude-proxy-alcli-throttles"
        ]
    );
    assert!(read_topic(&e, "alcli").await.is_some());
    let r = cli
        .run(&endpoint, &["teardown", "--stack", "alcli", "--yes"])
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(alarms_of(&e.proxy, "alcli").is_empty(), "{r}");
    assert_nothing_left(&e.direct, "alcli").await;
}
