use super::*;
use std::collections::BTreeMap;

fn function(code: &str, memory: i32) -> function::State {
    function::State {
        arn: "arn:aws:lambda:us-east-1:1:function:f".into(),
        runtime: Some("provided.al2023".into()),
        architecture: Some("x86_64".into()),
        memory_mb: Some(memory),
        timeout_seconds: Some(120),
        handler: Some("bootstrap".into()),
        role_arn: Some("arn:aws:iam::1:role/r".into()),
        env: BTreeMap::from([("A".to_string(), "1".to_string())]),
        code_sha256: Some(code.into()),
        package_type: Some("Zip".into()),
        layers: vec![],
        image_uri: None,
        tags: BTreeMap::new(),
    }
}

fn published(n: u32, f: &function::State) -> State {
    State {
        version: n.to_string(),
        code_sha256: f.code_sha256.clone().unwrap(),
        description: description(f.code_sha256.as_deref().unwrap(), &config_hash(f), None),
        last_modified: String::new(),
    }
}

#[test]
fn the_version_carrying_latest_is_found_else_one_is_published() {
    let f = function("abc", 256);
    let versions = vec![published(1, &function("old", 256)), published(2, &f)];
    assert!(matches!(target(Some(&f), false, &versions), Target::Existing(v) if v == "2"));
    // Another memory size is another configuration.
    assert!(matches!(
        target(Some(&function("abc", 512)), false, &versions),
        Target::Publish
    ));
    // A function changed by this apply always gets a version.
    assert!(matches!(target(Some(&f), true, &versions), Target::Publish));
    assert!(matches!(target(None, false, &[]), Target::Publish));
}

#[test]
fn description_round_trips() {
    let v = State {
        version: "3".into(),
        code_sha256: "c".into(),
        description: description("c", "h", Some("deadbeef")),
        last_modified: String::new(),
    };
    assert_eq!(v.config_hash(), Some("h"));
    assert_eq!(v.commit(), Some("deadbeef"));
    let v = State {
        description: description("c", "h", None),
        ..v
    };
    assert_eq!(v.commit(), None);
}

fn names_of(changes: &[ResourceChange]) -> Vec<String> {
    changes
        .iter()
        .map(|c| format!("{} {}", c.label().split(' ').next().unwrap(), c.name))
        .collect()
}

#[test]
fn pruning_keeps_the_newest_and_every_version_in_use() {
    let f = function("abc", 256);
    let versions: Vec<State> = (1..=6).map(|n| published(n, &f)).collect();
    fn input<'a>(target: &'a Target, in_use: &[&str]) -> PlanInput<'a> {
        PlanInput {
            function: "f",
            stack_stays: true,
            target,
            code_sha256: Some("abc".into()),
            commit: None,
            keep: 3,
            in_use: in_use.iter().map(|s| s.to_string()).collect(),
        }
    }
    // Publishing: the new one counts, so 5 and 6 stay; 1 is used by the alias.
    let changes = plan(input(&Target::Publish, &["1"]), &versions);
    assert_eq!(
        names_of(&changes),
        vec![
            "create f:(new version)",
            "delete f:2",
            "delete f:3",
            "delete f:4"
        ]
    );
    // Nothing to publish: 4, 5, 6 stay, and 2 is the target.
    let changes = plan(input(&Target::Existing("2".into()), &[]), &versions);
    assert_eq!(names_of(&changes), vec!["delete f:1", "delete f:3"]);
    // Teardown: all of them.
    let mut i = input(&Target::Publish, &[]);
    i.stack_stays = false;
    assert_eq!(plan(i, &versions).len(), 6);
}
