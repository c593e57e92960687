//! Anthropic model names → Bedrock model ids: the built-in table and the map a stack
//! configures (`BEDROCK_MODEL_MAP`). Read by the configuration (`config`) and used by the
//! Bedrock provider (`bedrock`); it depends on neither.

use crate::error::ProxyError;
use std::collections::BTreeMap;

/// Built-in Anthropic name → Bedrock id table (used when `BEDROCK_MODEL_MAP` is unset).
/// Global cross-Region inference profiles: they work from every commercial Region.
pub const DEFAULT_MODEL_MAP: &[(&str, &str)] = &[
    (
        "claude-opus-4-5",
        "global.anthropic.claude-opus-4-5-20251101-v1:0",
    ),
    (
        "claude-sonnet-4-5",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
    ),
    (
        "claude-haiku-4-5",
        "global.anthropic.claude-haiku-4-5-20251001-v1:0",
    ),
    (
        "claude-sonnet-4",
        "global.anthropic.claude-sonnet-4-20250514-v1:0",
    ),
];

/// Whether `model` is already a Bedrock model id, inference-profile id or ARN.
pub fn is_bedrock_id(model: &str) -> bool {
    model.starts_with("arn:") || model.contains("anthropic.")
}

/// Anthropic model names → Bedrock model or inference-profile ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMap(BTreeMap<String, String>);

impl Default for ModelMap {
    fn default() -> Self {
        ModelMap(
            DEFAULT_MODEL_MAP
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

impl ModelMap {
    pub fn new(map: BTreeMap<String, String>) -> Self {
        ModelMap(map)
    }

    /// `BEDROCK_MODEL_MAP`: a JSON object `{"name": "id", ...}` or `name=id,name=id`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let map: BTreeMap<String, String> = if text.starts_with('{') {
            serde_json::from_str(text).map_err(|e| {
                format!("not a JSON object of model name to Bedrock id strings: {e}")
            })?
        } else {
            let mut m = BTreeMap::new();
            for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').ok_or_else(|| {
                    format!("`{pair}` is not name=id (e.g. claude-sonnet-4-5=global.anthropic.claude-sonnet-4-5-20250929-v1:0)")
                })?;
                m.insert(k.trim().to_string(), v.trim().to_string());
            }
            m
        };
        if let Some((k, _)) = map
            .iter()
            .find(|(k, v)| k.trim().is_empty() || v.trim().is_empty())
        {
            return Err(format!("empty model name or id in the entry for `{k}`"));
        }
        if map.is_empty() {
            return Err("no entries".into());
        }
        Ok(ModelMap(map))
    }

    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The Bedrock id for a model the caller named: a Bedrock id or ARN as it is, a name
    /// through the map (a dated name such as `claude-sonnet-4-5-20250929` also matches the
    /// entry `claude-sonnet-4-5` when that entry's id carries the same date).
    pub fn resolve(&self, model: &str) -> Result<String, ProxyError> {
        if is_bedrock_id(model) {
            return Ok(model.to_string());
        }
        if let Some(id) = self.0.get(model) {
            return Ok(id.clone());
        }
        if let Some((base, date)) = model.rsplit_once('-') {
            if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) {
                if let Some(id) = self.0.get(base).filter(|id| id.contains(date)) {
                    return Ok(id.clone());
                }
            }
        }
        Err(ProxyError::InvalidRequest(format!(
            "model `{}` has no Bedrock id configured; use one of {} or a Bedrock model id \
             (e.g. global.anthropic.claude-sonnet-4-5-20250929-v1:0), or add it to \
             [provider.bedrock_models] in stack.toml (BEDROCK_MODEL_MAP)",
            model.chars().take(100).collect::<String>(),
            self.0.keys().cloned().collect::<Vec<_>>().join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_and_bedrock_ids_pass_through() {
        let m = ModelMap::default();
        assert_eq!(
            m.resolve("claude-sonnet-4-5").unwrap(),
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
        );
        assert_eq!(
            m.resolve("claude-sonnet-4-5-20250929").unwrap(),
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
        );
        assert!(m.resolve("claude-sonnet-4-5-20240101").is_err());
        for id in [
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
        ] {
            assert_eq!(m.resolve(id).unwrap(), id);
        }
        let e = m.resolve("gpt-4").unwrap_err();
        assert_eq!(e.status(), 400);
        let msg = e.to_string();
        assert!(
            msg.contains("gpt-4") && msg.contains("claude-haiku-4-5"),
            "{msg}"
        );
    }

    #[test]
    fn model_map_forms() {
        let a = ModelMap::parse("a=us.anthropic.x-v1:0, b = anthropic.y").unwrap();
        let b = ModelMap::parse(r#"{"a": "us.anthropic.x-v1:0", "b": "anthropic.y"}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.entries()["b"], "anthropic.y");
        assert!(ModelMap::parse("a").unwrap_err().contains("name=id"));
        assert!(ModelMap::parse("{\"a\": 1}").is_err());
        assert!(ModelMap::parse("a=").is_err());
        assert!(ModelMap::parse("").is_err());
    }
}
