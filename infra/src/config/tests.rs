//! The stack file's parsing, defaults, checks and flags.

use super::*;

#[test]
fn defaults_are_valid() {
    StackConfig::default().validate().unwrap();
}

#[test]
fn root_stack_toml_matches_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../stack.toml");
    let c = StackConfig::load(&path).unwrap();
    assert_eq!(
        c,
        StackConfig::default(),
        "stack.toml documents the defaults"
    );
}

#[test]
fn missing_file_is_defaults() {
    let c = StackConfig::load(Path::new("/nonexistent/stack.toml")).unwrap();
    assert_eq!(c, StackConfig::default());
}

#[test]
fn unknown_key_is_an_error_naming_it() {
    let e = StackConfig::parse("[function]\nmemory = 512\n").unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("memory"), "{msg}");
    assert!(msg.contains("unknown field"), "{msg}");
}

#[test]
fn ranges_are_checked() {
    let e = StackConfig::parse("[function]\nmemory_mb = 64\n").unwrap_err();
    assert!(e.to_string().contains("function.memory_mb"), "{e}");
    let e = StackConfig::parse("[function]\ntimeout_seconds = 901\n").unwrap_err();
    assert!(e.to_string().contains("function.timeout_seconds"), "{e}");
    let e = StackConfig::parse("[concurrency]\nreserved = -1\n").unwrap_err();
    assert!(format!("{e:#}").contains("concurrency"), "{e:#}");
    let e = StackConfig::parse("[function]\nlog_retention_days = 2\n").unwrap_err();
    assert!(e.to_string().contains("log_retention_days"), "{e}");
}

#[test]
fn cors_limits_are_checked_before_any_call() {
    let ok = "[function_url.cors]\nallow_origins = [\"https://example.com\"]\nallow_methods = [\"GET\", \"POST\"]\nmax_age_seconds = 86400\n";
    StackConfig::parse(ok).unwrap();
    for (bad, what) in [
        ("allow_methods = [\"GET\", \"POST\", \"PUT\", \"PATCH\", \"DELETE\", \"HEAD\", \"OPTIONS\"]", "at most 6"),
        ("allow_methods = [\"OPTIONS\"]", "1 to 6 characters"),
        ("max_age_seconds = 86401", "0 to 86400"),
        ("max_age_seconds = 4294967295", "0 to 86400"),
    ] {
        let text = format!("[function_url.cors]\nallow_origins = [\"https://example.com\"]\n{bad}\n");
        let e = StackConfig::parse(&text).unwrap_err();
        assert!(format!("{e:#}").contains(what), "{bad}: {e:#}");
    }
    let long = format!("https://{}.com", "a".repeat(250));
    let text = format!("[function_url.cors]\nallow_origins = [\"{long}\"]\n");
    let e = StackConfig::parse(&text).unwrap_err();
    assert!(format!("{e:#}").contains("1 to 253 characters"), "{e:#}");
}

#[test]
fn package_kinds() {
    assert_eq!(StackConfig::default().function.package, Package::Zip);
    for (text, want) in [
        ("zip", Package::Zip),
        ("layer", Package::Layer),
        ("image", Package::Image),
    ] {
        let c = StackConfig::parse(&format!("[function]\npackage = \"{text}\"\n")).unwrap();
        assert_eq!(c.function.package, want);
        assert_eq!(want.to_string(), text);
        assert_eq!(text.parse::<Package>().unwrap(), want);
    }
    assert_eq!(Package::Layer.package_type(), "Zip");
    assert_eq!(Package::Image.package_type(), "Image");
    let e = StackConfig::parse("[function]\npackage = \"docker\"\n").unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("package") && msg.contains("zip"), "{msg}");
    let c = StackConfig::default()
        .with_overrides(&Overrides {
            package: Some(Package::Image),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(c.function.package, Package::Image);
}

#[test]
fn provider_section() {
    let c = StackConfig::default();
    assert_eq!(c.provider.kind, ProviderKind::Anthropic);
    let c = StackConfig::parse(
        "[provider]\nkind = \"bedrock\"\nbedrock_region = \"eu-west-1\"\n\
         [provider.bedrock_models]\nclaude-haiku-4-5 = \"eu.anthropic.claude-haiku-4-5-20251001-v1:0\"\n",
    )
    .unwrap();
    assert_eq!(c.provider.kind, ProviderKind::Bedrock);
    assert_eq!(
        c.provider.model_map_env(),
        "claude-haiku-4-5=eu.anthropic.claude-haiku-4-5-20251001-v1:0"
    );
    // The default model must have an id.
    let e = StackConfig::parse(
        "[provider]\nkind = \"bedrock\"\n[provider.bedrock_models]\nclaude-sonnet-4-5 = \"global.anthropic.claude-sonnet-4-5-20250929-v1:0\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("claude-haiku-4-5"), "{e}");
    let e = StackConfig::parse("[provider.bedrock_models]\nx = \"gpt-4\"\n").unwrap_err();
    assert!(e.to_string().contains("provider.bedrock_models"), "{e}");
    let e = StackConfig::parse("[provider]\nkind = \"openai\"\n").unwrap_err();
    assert!(format!("{e:#}").contains("kind"), "{e:#}");
    let c = StackConfig::default()
        .with_overrides(&Overrides {
            provider: Some(ProviderKind::Bedrock),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(c.provider.kind, ProviderKind::Bedrock);
    assert_eq!(
        "Bedrock".parse::<ProviderKind>().unwrap(),
        ProviderKind::Bedrock
    );
}

#[test]
fn concurrency_forms() {
    let c = StackConfig::parse("[concurrency]\nreserved = 7\n").unwrap();
    assert_eq!(c.concurrency.resolve(), Some(7));
    let c = StackConfig::parse("[concurrency]\nreserved = \"none\"\n").unwrap();
    assert_eq!(c.concurrency.resolve(), None);
    let c = StackConfig::parse(
        "[concurrency]\nreserved = \"auto\"\nrequests_per_minute = 50\nexpected_duration_seconds = 20\n",
    )
    .unwrap();
    // 50 / 60 × 20 = 16.67 → 17
    assert_eq!(c.concurrency.resolve(), Some(17));
    assert_eq!(auto_concurrency(4000, 30.0), 2000);
    assert_eq!(auto_concurrency(1, 0.5), 1);
    assert!("lots".parse::<ConcurrencySetting>().is_err());
}

#[test]
fn zero_concurrency_warns() {
    let c = StackConfig::default()
        .with_overrides(&Overrides {
            concurrency: Some(ConcurrencySetting::Reserved(0)),
            ..Default::default()
        })
        .unwrap();
    assert!(c
        .warnings()
        .iter()
        .any(|w| w.contains("stops the function")));
}

#[test]
fn overrides_replace_values_and_are_validated() {
    let o = Overrides {
        stack: Some("prod".into()),
        memory_mb: Some(1024),
        http_api: Some(true),
        ..Default::default()
    };
    let c = StackConfig::default().with_overrides(&o).unwrap();
    assert_eq!(c.stack.name, "prod");
    assert_eq!(c.function.memory_mb, 1024);
    assert!(c.http_api.enabled);
    let bad = Overrides {
        memory_mb: Some(20_000),
        ..Default::default()
    };
    assert!(StackConfig::default().with_overrides(&bad).is_err());
    let none = Overrides {
        function_url: Some(false),
        ..Default::default()
    };
    assert!(StackConfig::default().with_overrides(&none).is_err());
}

#[test]
fn fallback_settings() {
    let c = StackConfig::parse("[provider]\nfallback = \"bedrock\"\nfailover_after_ms = 20000\n")
        .unwrap();
    assert_eq!(c.provider.fallback, Some(ProviderKind::Bedrock));
    assert!(c.provider.uses(ProviderKind::Bedrock) && c.provider.uses(ProviderKind::Anthropic));
    assert!(!StackConfig::default().provider.uses(ProviderKind::Bedrock));
    let c =
        StackConfig::parse("[provider]\nkind = \"bedrock\"\nfallback = \"anthropic\"\n").unwrap();
    assert_eq!(c.provider.fallback, Some(ProviderKind::Anthropic));
    for (toml, says) in [
        ("[provider]\nfallback = \"anthropic\"\n", "the other one"),
        ("[provider]\nfallback = \"openai\"\n", "fallback"),
        (
            "[provider]\nfallback = \"bedrock\"\nfailover_after_ms = 0\n",
            "failover_after_ms",
        ),
        // Not less than the function's 120 s: the fallback would get no time.
        (
            "[provider]\nfallback = \"bedrock\"\nfailover_after_ms = 120000\n",
            "timeout_seconds",
        ),
        (
            "[provider]\nfallback = \"bedrock\"\n[provider.bedrock_models]\n",
            "bedrock_models",
        ),
    ] {
        let e = format!("{:#}", StackConfig::parse(toml).unwrap_err());
        assert!(e.contains(says), "{toml}: {e}");
    }
    // Without a fallback, failover_after_ms does nothing: a warning, not an error.
    let c = StackConfig::parse("[provider]\nfailover_after_ms = 5000\n").unwrap();
    assert!(c.warnings().iter().any(|w| w.contains("failover_after_ms")));
    // --fallback none turns off a fallback of the file.
    let file = StackConfig::parse("[provider]\nfallback = \"bedrock\"\n").unwrap();
    let off = file
        .with_overrides(&Overrides {
            fallback: Some(None),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(off.provider.fallback, None);
}

#[test]
fn prices_override_the_table_by_model() {
    let c = StackConfig::parse("[prices]\n\"claude-haiku-4-5\" = { input = 2.0, output = 10.0 }\n")
        .unwrap();
    let p = crate::prices::price_of("claude-haiku-4-5-20251001", &c.prices).unwrap();
    assert_eq!(
        (p.price.input, p.price.output, p.price.cache_read),
        (2.0, 10.0, 0.0)
    );
    assert_eq!(p.source, "stack.toml [prices]");
    assert!(
        StackConfig::parse("[prices]\n\"m\" = { input = 1.0, output = 1.0, typo = 1 }\n").is_err()
    );
}

#[test]
fn the_api_front_has_one_spelling() {
    let c = StackConfig::parse("[api]\nkind = \"rest\"\n").unwrap();
    assert_eq!(c.api_kind(), ApiKind::Rest);
    assert!(!c.http_api.enabled);
    // A public function URL would go around the usage plan: it is off.
    assert!(!c.function_url.enabled);
    let iam =
        StackConfig::parse("[api]\nkind = \"rest\"\n[function_url]\nauth = \"AWS_IAM\"\n").unwrap();
    assert!(iam.function_url.enabled);
    // The older spelling.
    let old = StackConfig::parse("[http_api]\nenabled = true\n").unwrap();
    assert_eq!(old.api_kind(), ApiKind::Http);
    assert_eq!(old.api.kind, Some(ApiKind::Http));
    let e = StackConfig::parse("[http_api]\nenabled = true\n[api]\nkind = \"rest\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("older spelling"), "{e}");
    // `none` is the default, spelled or not.
    assert_eq!(
        StackConfig::parse("[api]\nkind = \"none\"\n").unwrap(),
        StackConfig::default()
    );
    let e = StackConfig::parse("[api]\nkind = \"rest\"\nburst_limit = 0\n").unwrap_err();
    assert!(format!("{e:#}").contains("api.burst_limit"), "{e:#}");
}

#[test]
fn api_flags_override_the_file() {
    let rest = StackConfig::default()
        .with_overrides(&Overrides {
            api: Some(ApiKind::Rest),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rest.api_kind(), ApiKind::Rest);
    assert!(!rest.function_url.enabled);
    let http = rest
        .with_overrides(&Overrides {
            http_api: Some(true),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(http.api_kind(), ApiKind::Http);
    assert!(http.http_api.enabled);
    // --no-http-api takes the HTTP API away, and leaves a REST API alone.
    let none = StackConfig::parse("[http_api]\nenabled = true\n")
        .unwrap()
        .with_overrides(&Overrides {
            http_api: Some(false),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(none.api_kind(), ApiKind::None);
    let still = rest
        .with_overrides(&Overrides {
            http_api: Some(false),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(still.api_kind(), ApiKind::Rest);
    // No endpoint at all.
    let e = StackConfig::default()
        .with_overrides(&Overrides {
            function_url: Some(false),
            api: Some(ApiKind::None),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("--api rest|http"), "{e}");
}

#[test]
fn the_commented_alarms_section_of_stack_toml_is_the_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../stack.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let block: String = text
        .lines()
        .skip_while(|l| *l != "# [alarms]")
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            *l == "[alarms]"
                || l.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                })
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(block.contains("output_tokens"), "{block}");
    let c = StackConfig::parse(&block).unwrap();
    let a = c.alarms.unwrap();
    assert_eq!(
        a,
        AlarmsSection {
            email: Some("ops@example.com".into()),
            ..AlarmsSection::default()
        }
    );
}
