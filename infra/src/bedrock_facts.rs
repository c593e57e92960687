//! Facts about Amazon Bedrock the stack file and the role both rely on: the inference-profile
//! geographies and the Regions each routes to, the default model table, and what counts as
//! an inference profile. A leaf: no AWS calls, no imports from the crate.

/// Anthropic model names → Bedrock ids the deployer writes by default (global cross-Region
/// inference profiles, usable from every commercial Region). The handler's built-in table
/// (`handler::bedrock::DEFAULT_MODEL_MAP`) is the same; a test checks it.
pub const DEFAULT_BEDROCK_MODELS: &[(&str, &str)] = &[
    (
        "claude-haiku-4-5",
        "global.anthropic.claude-haiku-4-5-20251001-v1:0",
    ),
    (
        "claude-opus-4-5",
        "global.anthropic.claude-opus-4-5-20251101-v1:0",
    ),
    (
        "claude-sonnet-4",
        "global.anthropic.claude-sonnet-4-20250514-v1:0",
    ),
    (
        "claude-sonnet-4-5",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    ),
];

/// Inference-profile prefixes and the Regions each routes requests to. `global` routes
/// anywhere (see `role::add_bedrock_statements`).
pub const PROFILE_REGIONS: &[(&str, &[&str])] = &[
    ("us", &["us-east-1", "us-east-2", "us-west-1", "us-west-2"]),
    ("us-gov", &["us-gov-east-1", "us-gov-west-1"]),
    ("ca", &["ca-central-1", "ca-west-1"]),
    (
        "eu",
        &[
            "eu-central-1",
            "eu-central-2",
            "eu-north-1",
            "eu-south-1",
            "eu-south-2",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
        ],
    ),
    (
        "apac",
        &[
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-northeast-3",
            "ap-south-1",
            "ap-south-2",
            "ap-southeast-1",
            "ap-southeast-2",
            "ap-southeast-3",
            "ap-southeast-4",
        ],
    ),
    ("jp", &["ap-northeast-1", "ap-northeast-3"]),
    ("au", &["ap-southeast-2", "ap-southeast-4"]),
    ("global", &[]),
];

/// True when `id` names an inference profile (system or application) rather than a
/// foundation model: a `<geography>.anthropic.` id, or an `:inference-profile/` or
/// `:application-inference-profile/` ARN.
pub fn is_profile(id: &str) -> bool {
    if id.starts_with("arn:") {
        return id.contains(":inference-profile/")
            || id.contains(":application-inference-profile/");
    }
    match id.split_once('.') {
        Some((prefix, rest)) => {
            rest.starts_with("anthropic.") || PROFILE_REGIONS.iter().any(|(p, _)| *p == prefix)
        }
        None => false,
    }
}
