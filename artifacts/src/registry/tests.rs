use super::*;

#[test]
fn ecr_tokens_decode_to_user_and_password() {
    let token = base64::engine::general_purpose::STANDARD.encode("AWS:secret:with:colons");
    let c = Credentials::from_ecr_token(&token).unwrap();
    assert_eq!(c.username, "AWS");
    assert_eq!(c.password, "secret:with:colons");
    assert!(!format!("{c:?}").contains("secret"));
    assert!(Credentials::from_ecr_token("!!!").is_err());
}

#[test]
fn bearer_challenges_parse() {
    let c = Challenge::parse(
        r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
    );
    let Challenge::Bearer { realm, params } = c else {
        panic!("{c:?}")
    };
    assert_eq!(realm, "https://auth.example/token");
    assert!(params.contains(&("scope".into(), "repository:a/b:pull,push".into())));
    assert!(params.contains(&("service".into(), "registry.example".into())));
    assert_eq!(Challenge::parse(r#"Basic realm="x""#), Challenge::Basic);
}

#[test]
fn addresses_choose_the_scheme() {
    let ecr = Registry::new(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "claude-proxy-s",
        None,
    )
    .unwrap();
    assert_eq!(ecr.base.scheme(), "https");
    assert_eq!(
        ecr.image_uri("sha256:ab"),
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/claude-proxy-s@sha256:ab"
    );
    let local = Registry::new("127.0.0.1:5000", "repo", None).unwrap();
    assert_eq!(local.base.scheme(), "http");
    assert_eq!(
        local.image_uri("sha256:ab"),
        "127.0.0.1:5000/repo@sha256:ab"
    );
    assert!(Registry::new("http://registry.example.com", "repo", None).is_err());
    assert!(Registry::new("127.0.0.1:5000", "Repo", None).is_err());
    assert!(Registry::new("127.0.0.1:5000/repo", "repo", None).is_err());
}
