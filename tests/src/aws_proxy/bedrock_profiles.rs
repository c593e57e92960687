//! Bedrock's `GetInferenceProfile` (`GET /inference-profiles/{id}`), which moto does not
//! implement: the proxy answers it itself, always, in Bedrock's own response shape.
//!
//! - System profiles (`<geography>.anthropic.<model>`) exist in the Regions of their
//!   geography ([`SYSTEM_GEOGRAPHIES`]; `global` everywhere) and route to that model in those
//!   Regions. The table is the stand-in's, deliberately not the toolkit's built-in one (`us`
//!   leaves out us-west-1, `apac` adds ap-southeast-5 and ap-southeast-7), so a test sees
//!   whether the grants came from the lookup.
//! - Application inference profiles exist once a test registers them
//!   ([`InferenceProfiles::application`]).
//! - [`InferenceProfiles::refuse`] answers every lookup with AWS's 403
//!   `AccessDeniedException` (a deployer without `bedrock:GetInferenceProfile`).
//! - Anything else: 404 `ResourceNotFoundException`.

use serde_json::json;
use std::collections::BTreeMap;

/// The account moto uses.
const ACCOUNT: &str = "123456789012";

/// Where the stand-in's system profiles route to, by geography prefix.
pub const SYSTEM_GEOGRAPHIES: &[(&str, &[&str])] = &[
    ("us", &["us-east-1", "us-east-2", "us-west-2"]),
    ("us-gov", &["us-gov-east-1", "us-gov-west-1"]),
    (
        "eu",
        &["eu-central-1", "eu-north-1", "eu-west-1", "eu-west-3"],
    ),
    (
        "apac",
        &[
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-south-1",
            "ap-southeast-1",
            "ap-southeast-2",
            "ap-southeast-5",
            "ap-southeast-7",
        ],
    ),
    (
        "global",
        &[
            "us-east-1",
            "us-east-2",
            "us-west-2",
            "eu-west-1",
            "ap-northeast-1",
        ],
    ),
];

/// The stand-in's inference profiles beyond the system ones, and its refusal switch.
#[derive(Debug, Clone, Default)]
pub struct InferenceProfiles {
    /// Application inference profiles by ARN: the foundation-model ARNs each routes to.
    pub application: BTreeMap<String, Vec<String>>,
    /// Refuse every lookup (`AccessDeniedException`).
    pub refuse: bool,
}

/// The answer as (status, error code or "" for success, JSON body).
pub fn answer(
    profiles: &InferenceProfiles,
    region: &str,
    path: &str,
) -> Option<(u16, String, String)> {
    let id = path.strip_prefix("/inference-profiles/")?;
    let id = super::partition::url_decode(id, false);
    let partition = super::partition::partition_of_region(region);
    let arn_of =
        |id: &str| format!("arn:{partition}:bedrock:{region}:{ACCOUNT}:inference-profile/{id}");
    if profiles.refuse {
        let resource = if id.starts_with("arn:") {
            id.clone()
        } else {
            arn_of(&id)
        };
        return Some((
            403,
            "AccessDeniedException".into(),
            json!({"message": format!(
                "User: arn:{partition}:iam::{ACCOUNT}:user/deployer is not authorized to perform: bedrock:GetInferenceProfile on resource: {resource} because no identity-based policy allows the bedrock:GetInferenceProfile action"
            )})
            .to_string(),
        ));
    }
    if let Some(models) = profiles.application.get(&id) {
        let profile_id = id.rsplit('/').next().unwrap_or_default();
        return Some((
            200,
            String::new(),
            json!({
                "inferenceProfileName": format!("app-{profile_id}"),
                "description": "application inference profile (stand-in)",
                "createdAt": "2026-01-01T00:00:00Z",
                "updatedAt": "2026-01-01T00:00:00Z",
                "inferenceProfileArn": id,
                "inferenceProfileId": profile_id,
                "models": models.iter().map(|m| json!({"modelArn": m})).collect::<Vec<_>>(),
                "status": "ACTIVE",
                "type": "APPLICATION",
            })
            .to_string(),
        ));
    }
    // A system profile, by id or by ARN.
    let system_id = match id.split_once(":inference-profile/") {
        Some((_, rest)) => rest.to_string(),
        None if !id.starts_with("arn:") => id.clone(),
        None => String::new(),
    };
    let found = system_id.split_once('.').and_then(|(prefix, model)| {
        let (_, regions) = SYSTEM_GEOGRAPHIES.iter().find(|(p, _)| *p == prefix)?;
        let here = prefix == "global" || regions.contains(&region);
        (here && model.starts_with("anthropic.")).then_some((model, *regions))
    });
    let Some((model, regions)) = found else {
        return Some((
            404,
            "ResourceNotFoundException".into(),
            json!({"message": "The specified inference profile was not found."}).to_string(),
        ));
    };
    Some((
        200,
        String::new(),
        json!({
            "inferenceProfileName": format!("{system_id} (stand-in)"),
            "description": "system-defined cross-Region inference profile (stand-in)",
            "createdAt": "2025-09-29T00:00:00Z",
            "updatedAt": "2025-09-29T00:00:00Z",
            "inferenceProfileArn": arn_of(&system_id),
            "inferenceProfileId": system_id,
            "models": regions
                .iter()
                .map(|r| json!({"modelArn": format!("arn:{partition}:bedrock:{r}::foundation-model/{model}")}))
                .collect::<Vec<_>>(),
            "status": "ACTIVE",
            "type": "SYSTEM_DEFINED",
        })
        .to_string(),
    ))
}
