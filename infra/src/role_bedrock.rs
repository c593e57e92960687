//! The Bedrock statements of the role's policy: exactly the configured models and inference
//! profiles, and the foundation models those profiles route to (see
//! [`add_bedrock_statements`]).

use crate::bedrock_facts::PROFILE_REGIONS;
use serde_json::{json, Value};

/// What one configured Bedrock id is, for the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BedrockTarget {
    /// A foundation model (`anthropic.claude-...`), or an ARN used as it is.
    Direct { arn: String, model: Option<String> },
    /// An inference profile: a system profile `<prefix>.<model>` (id or
    /// `:inference-profile/` ARN), or an application inference profile
    /// (`:application-inference-profile/` ARN: no prefix, no model known without a lookup).
    Profile {
        prefix: Option<String>,
        profile_arn: String,
        model: Option<String>,
    },
}

/// Classifies a Bedrock id or ARN; `partition`/`region`/`account` are those of the Bedrock
/// calls.
pub fn bedrock_target(id: &str, partition: &str, region: &str, account: &str) -> BedrockTarget {
    if let Some(rest) = id.strip_prefix("arn:") {
        if rest.contains(":application-inference-profile/") {
            return BedrockTarget::Profile {
                prefix: None,
                profile_arn: id.to_string(),
                model: None,
            };
        }
        if let Some((_, profile)) = rest.split_once(":inference-profile/") {
            if let Some((prefix, model)) = profile.split_once('.') {
                return BedrockTarget::Profile {
                    prefix: Some(prefix.to_string()),
                    profile_arn: id.to_string(),
                    model: Some(model.to_string()),
                };
            }
        }
        let model = rest
            .split_once(":foundation-model/")
            .map(|(_, m)| m.to_string());
        return BedrockTarget::Direct {
            arn: id.to_string(),
            model,
        };
    }
    match id.split_once('.') {
        Some((prefix, model)) if crate::bedrock_facts::is_profile(id) => BedrockTarget::Profile {
            prefix: Some(prefix.to_string()),
            profile_arn: format!(
                "arn:{partition}:bedrock:{region}:{account}:inference-profile/{id}"
            ),
            model: Some(model.to_string()),
        },
        _ => BedrockTarget::Direct {
            arn: foundation_model_arn(partition, region, id),
            model: Some(id.to_string()),
        },
    }
}

fn foundation_model_arn(partition: &str, region: &str, model: &str) -> String {
    format!("arn:{partition}:bedrock:{region}::foundation-model/{model}")
}

/// The model id of a foundation-model ARN, and whether the ARN names no Region (global
/// cross-Region inference).
fn model_of_arn(arn: &str) -> Option<(&str, bool)> {
    let (head, model) = arn.split_once(":foundation-model/")?;
    let region = head.split(':').nth(3).unwrap_or_default();
    Some((model, region.is_empty()))
}

/// Adds the Bedrock statements for exactly the configured ids:
/// - `bedrock:InvokeModel` + `bedrock:InvokeModelWithResponseStream` on each foundation
///   model and each inference profile (system or application);
/// - the same on the foundation models a profile routes to, only when called through one
///   of the configured profiles (`bedrock:InferenceProfileArn`): exactly the
///   `models[].modelArn` that `bedrock:GetInferenceProfile` returned (`lookups`), or, when
///   the lookup was refused or not made, the profile's model in the Regions of its
///   geography in [`PROFILE_REGIONS`] (an application profile then gets none);
/// - for `global.` profiles (and Region-less routed ARNs) the Region-less foundation-model
///   ARN with `aws:RequestedRegion = unspecified`, as global cross-Region inference requires;
/// - `bedrock:CountTokens` on the configured models in the calling Region.
pub fn add_bedrock_statements<'a>(
    policy: &mut Value,
    partition: &str,
    region: &str,
    account: &str,
    ids: impl IntoIterator<Item = &'a String>,
    lookups: &crate::bedrock::ProfileLookups,
) {
    use crate::bedrock::ProfileLookup;
    use std::collections::BTreeSet;
    let (mut direct, mut profiles, mut routed, mut global_profiles, mut global_models, mut count) = (
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
    );
    for id in ids {
        match bedrock_target(id, partition, region, account) {
            BedrockTarget::Direct { arn, model } => {
                if let Some(m) = model {
                    count.insert(foundation_model_arn(partition, region, &m));
                }
                direct.insert(arn);
            }
            BedrockTarget::Profile {
                prefix,
                profile_arn,
                model,
            } => {
                let global = prefix.as_deref() == Some("global");
                let profile_arn = match lookups.get(id) {
                    Some(ProfileLookup::Resolved { arn, models }) => {
                        for m in models {
                            let Some((model, regionless)) = model_of_arn(m) else {
                                routed.insert(m.clone());
                                continue;
                            };
                            count.insert(foundation_model_arn(partition, region, model));
                            if regionless || global {
                                global_models.insert(foundation_model_arn(partition, "", model));
                                global_profiles.insert(arn.clone());
                            }
                            if !regionless {
                                routed.insert(m.clone());
                            }
                        }
                        arn.clone()
                    }
                    _ => {
                        if let Some(model) = &model {
                            count.insert(foundation_model_arn(partition, region, model));
                            let regions = PROFILE_REGIONS
                                .iter()
                                .find(|(p, _)| Some(*p) == prefix.as_deref())
                                .map(|(_, r)| *r)
                                .unwrap_or(&[]);
                            routed.insert(foundation_model_arn(partition, region, model));
                            for r in regions {
                                routed.insert(foundation_model_arn(partition, r, model));
                            }
                            if global {
                                global_models.insert(foundation_model_arn(partition, "", model));
                                global_profiles.insert(profile_arn.clone());
                            }
                        }
                        profile_arn
                    }
                };
                direct.insert(profile_arn.clone());
                profiles.insert(profile_arn);
            }
        }
    }
    let invoke = json!([
        "bedrock:InvokeModel",
        "bedrock:InvokeModelWithResponseStream"
    ]);
    let mut statements = Vec::new();
    if !direct.is_empty() {
        statements.push(json!({
            "Sid": "InvokeBedrockModels",
            "Effect": "Allow",
            "Action": invoke,
            "Resource": direct,
        }));
    }
    if !routed.is_empty() {
        statements.push(json!({
            "Sid": "InvokeBedrockModelsThroughProfiles",
            "Effect": "Allow",
            "Action": invoke,
            "Resource": routed,
            "Condition": {"StringEquals": {"bedrock:InferenceProfileArn": profiles}},
        }));
    }
    if !global_profiles.is_empty() {
        statements.push(json!({
            "Sid": "InvokeBedrockModelsThroughGlobalProfiles",
            "Effect": "Allow",
            "Action": invoke,
            "Resource": global_models,
            "Condition": {"StringEquals": {
                "aws:RequestedRegion": "unspecified",
                "bedrock:InferenceProfileArn": global_profiles,
            }},
        }));
    }
    if !count.is_empty() {
        statements.push(json!({
            "Sid": "CountBedrockTokens",
            "Effect": "Allow",
            "Action": ["bedrock:CountTokens"],
            "Resource": count,
        }));
    }
    if let Some(Value::Array(list)) = policy.get_mut("Statement") {
        list.extend(statements);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::policy_document;

    #[test]
    fn bedrock_statements_name_exactly_the_configured_models() {
        let mut doc = policy_document("arn:secret", "arn:logs");
        let ids = [
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0".to_string(),
            "us.anthropic.claude-haiku-4-5-20251001-v1:0".to_string(),
            "anthropic.claude-opus-4-1-20250805-v1:0".to_string(),
        ];
        let none = Default::default();
        add_bedrock_statements(&mut doc, "aws", "us-east-1", "123456789012", &ids, &none);
        let text = doc.to_string();
        assert!(
            !text.contains("\"*\"") && !text.contains("bedrock:*"),
            "{text}"
        );
        let st = doc["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 6);
        assert_eq!(
            st[2]["Resource"],
            json!([
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0",
                "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-opus-4-1-20250805-v1:0",
            ])
        );
        let routed: Vec<&str> = st[3]["Resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(routed.contains(
            &"arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0"
        ));
        assert!(routed.contains(&"arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0"));
        assert!(!routed
            .iter()
            .any(|r| r.contains("eu-") || r.contains("opus")));
        assert_eq!(
            st[4]["Resource"],
            json!(["arn:aws:bedrock:::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0"])
        );
        assert_eq!(
            st[4]["Condition"]["StringEquals"]["aws:RequestedRegion"],
            "unspecified"
        );
        assert_eq!(st[5]["Action"], json!(["bedrock:CountTokens"]));
        assert_eq!(
            bedrock_target(
                "arn:aws:bedrock:us-east-1:1:application-inference-profile/x",
                "aws",
                "us-east-1",
                "1"
            ),
            BedrockTarget::Profile {
                prefix: None,
                profile_arn: "arn:aws:bedrock:us-east-1:1:application-inference-profile/x".into(),
                model: None
            }
        );
    }

    #[test]
    fn resolved_profiles_grant_exactly_the_models_they_route_to() {
        use crate::bedrock::ProfileLookup;
        let app =
            "arn:aws-us-gov:bedrock:us-gov-west-1:1:application-inference-profile/abc".to_string();
        let sys = "us-gov.anthropic.claude-sonnet-4-5-20250929-v1:0".to_string();
        let fm = |r: &str, m: &str| format!("arn:aws-us-gov:bedrock:{r}::foundation-model/{m}");
        let lookups = crate::bedrock::ProfileLookups::from([
            (
                app.clone(),
                ProfileLookup::Resolved {
                    arn: app.clone(),
                    models: vec![fm(
                        "us-gov-west-1",
                        "anthropic.claude-haiku-4-5-20251001-v1:0",
                    )],
                },
            ),
            (
                sys.clone(),
                ProfileLookup::Refused {
                    reason: "AccessDeniedException: no".into(),
                },
            ),
        ]);
        let mut doc = policy_document("arn:secret", "arn:logs");
        add_bedrock_statements(
            &mut doc,
            "aws-us-gov",
            "us-gov-west-1",
            "1",
            [&app, &sys],
            &lookups,
        );
        let st = doc["Statement"].as_array().unwrap();
        let by_sid = |sid: &str| st.iter().find(|s| s["Sid"] == sid).unwrap().clone();
        let sys_arn = format!("arn:aws-us-gov:bedrock:us-gov-west-1:1:inference-profile/{sys}");
        assert_eq!(
            by_sid("InvokeBedrockModels")["Resource"],
            json!([app, sys_arn])
        );
        let routed = by_sid("InvokeBedrockModelsThroughProfiles");
        assert_eq!(
            routed["Resource"],
            json!([
                fm("us-gov-east-1", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
                fm("us-gov-west-1", "anthropic.claude-haiku-4-5-20251001-v1:0"),
                fm("us-gov-west-1", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
            ])
        );
        assert_eq!(
            routed["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"],
            json!([app, sys_arn])
        );
        assert!(!doc.to_string().contains("arn:aws:"), "{doc}");
    }
}
