//! Bedrock inference profiles named by a Bedrock stack, resolved at plan time with
//! `bedrock:GetInferenceProfile` into the foundation-model ARNs they route to (the role's
//! policy grants exactly those, see [`crate::role::add_bedrock_statements`]).
//!
//! System profiles (`global.`/`us.`/`eu.`/`apac.`/... ids or `:inference-profile/` ARNs)
//! and application inference profiles (`:application-inference-profile/` ARNs) are looked
//! up in the Region of the Bedrock calls. When the lookup is refused (the deployer lacks
//! `bedrock:GetInferenceProfile`), the built-in geography table
//! ([`crate::bedrock_facts::PROFILE_REGIONS`]) is the fallback and the plan says so; an
//! application profile then gets no foundation-model grant at all.

use crate::aws::{describe, Aws, RetryLog};
pub use crate::bedrock_facts::is_profile;
use anyhow::Result;
use aws_config::Region;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::collections::BTreeMap;

/// What `bedrock:GetInferenceProfile` said about one configured profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileLookup {
    /// The profile's ARN and the foundation-model ARNs it routes to (`models[].modelArn`).
    Resolved { arn: String, models: Vec<String> },
    /// The lookup was refused (`AccessDeniedException`, ...): the built-in table is used.
    Refused { reason: String },
    /// Bedrock knows no such profile in that Region.
    NotFound { reason: String },
}

/// Lookups by configured id (as written in `[provider.bedrock_models]`).
pub type ProfileLookups = BTreeMap<String, ProfileLookup>;

/// Error codes that mean "not allowed to look", not "no such profile".
fn is_refusal(code: &str) -> bool {
    matches!(
        code,
        "AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation"
    )
}

/// Looks up every inference profile among `ids` in `region` (the Region of the Bedrock
/// calls). Foundation-model ids are skipped. Errors other than a refusal or "not found"
/// fail the read.
pub async fn read<'a>(
    aws: &Aws,
    region: &str,
    ids: impl IntoIterator<Item = &'a String>,
) -> Result<ProfileLookups> {
    let mut out = ProfileLookups::new();
    let profiles: Vec<&String> = ids.into_iter().filter(|id| is_profile(id)).collect();
    if profiles.is_empty() {
        return Ok(out);
    }
    let client = aws_sdk_bedrock::Client::from_conf(
        aws_sdk_bedrock::config::Builder::from(&aws.sdk_config)
            .region(Region::new(region.to_string()))
            .interceptor(RetryLog)
            .build(),
    );
    for id in profiles {
        if out.contains_key(id) {
            continue;
        }
        let lookup = match client
            .get_inference_profile()
            .inference_profile_identifier(id)
            .send()
            .await
        {
            Ok(p) => ProfileLookup::Resolved {
                arn: p.inference_profile_arn().to_string(),
                models: p
                    .models()
                    .iter()
                    .filter_map(|m| m.model_arn().map(str::to_string))
                    .collect(),
            },
            Err(e) => {
                let code = match &e {
                    SdkError::ServiceError(se) => se.err().code().unwrap_or_default().to_string(),
                    _ => String::new(),
                };
                let reason = describe(&e);
                if is_refusal(&code) {
                    ProfileLookup::Refused { reason }
                } else if crate::aws::is_not_found(&e) {
                    ProfileLookup::NotFound { reason }
                } else {
                    anyhow::bail!("bedrock:GetInferenceProfile {id} (in {region}): {reason}");
                }
            }
        };
        out.insert(id.clone(), lookup);
    }
    Ok(out)
}

/// The plan's notes and blockers about the lookups of the configured `ids`.
pub fn notes_and_blockers<'a>(
    region: &str,
    ids: impl IntoIterator<Item = &'a String>,
    lookups: &ProfileLookups,
) -> (Vec<String>, Vec<String>) {
    let (mut notes, mut blockers) = (Vec::new(), Vec::new());
    for id in ids.into_iter().filter(|id| is_profile(id)) {
        let application = id.contains(":application-inference-profile/");
        let fallback = if application {
            "the role gets no foundation-model grant for it, so calls through it are denied"
        } else {
            "the role is granted the foundation models in the Regions of the built-in geography table instead, which may lag the Regions AWS routes to"
        };
        match lookups.get(id) {
            Some(ProfileLookup::Resolved { models, .. }) => {
                if models.is_empty() {
                    blockers.push(format!(
                        "inference profile {id} (in {region}) routes to no foundation model"
                    ));
                }
            }
            Some(ProfileLookup::Refused { reason }) => notes.push(format!(
                "bedrock:GetInferenceProfile {id} (in {region}) was refused ({reason}): {fallback}; \
                 allow bedrock:GetInferenceProfile to the deployer (docs/deployer-policy.json) for exact grants"
            )),
            Some(ProfileLookup::NotFound { reason }) => blockers.push(format!(
                "inference profile {id} does not exist in {region} ({reason}): check [provider.bedrock_models] and provider.bedrock_region"
            )),
            None => notes.push(format!(
                "inference profile {id} was not looked up: {fallback}"
            )),
        }
    }
    (notes, blockers)
}
