//! What Claude's tokens cost, for `cargo xtask usage` and the plan's worst case in dollars
//! (a leaf). The built-in table carries its date and source; `[prices]` in stack.toml
//! overrides or adds models. Prices are US dollars per million tokens.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// When the built-in table was taken, and from where.
pub const TABLE_DATE: &str = "2025-11-24";
pub const TABLE_SOURCE: &str =
    "https://www.anthropic.com/pricing (Claude API, standard tier, per million tokens)";

/// One model's prices, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    /// Writing the prompt cache (5-minute cache).
    #[serde(default)]
    pub cache_write: f64,
    /// Reading the prompt cache.
    #[serde(default)]
    pub cache_read: f64,
}

const fn p(input: f64, output: f64, cache_write: f64, cache_read: f64) -> ModelPrice {
    ModelPrice {
        input,
        output,
        cache_write,
        cache_read,
    }
}

/// The built-in table, by model name prefix (a dated id such as
/// `claude-haiku-4-5-20251001` takes its family's price).
pub const TABLE: &[(&str, ModelPrice)] = &[
    ("claude-opus-4-5", p(5.0, 25.0, 6.25, 0.50)),
    ("claude-opus-4-1", p(15.0, 75.0, 18.75, 1.50)),
    ("claude-opus-4", p(15.0, 75.0, 18.75, 1.50)),
    ("claude-sonnet-4-5", p(3.0, 15.0, 3.75, 0.30)),
    ("claude-sonnet-4", p(3.0, 15.0, 3.75, 0.30)),
    ("claude-3-7-sonnet", p(3.0, 15.0, 3.75, 0.30)),
    ("claude-haiku-4-5", p(1.0, 5.0, 1.25, 0.10)),
    ("claude-3-5-haiku", p(0.80, 4.0, 1.0, 0.08)),
    ("claude-3-haiku", p(0.25, 1.25, 0.30, 0.03)),
];

/// A price and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Priced {
    /// The table entry used (a model name or prefix).
    pub entry: String,
    pub price: ModelPrice,
    /// `stack.toml [prices]` or the built-in table with its date and source.
    pub source: String,
}

/// The price of `model`: `[prices]` first (exact name, then the longest prefix), then the
/// built-in table (longest prefix). `None` for a model neither knows.
pub fn price_of(model: &str, overrides: &BTreeMap<String, ModelPrice>) -> Option<Priced> {
    let longest = |entries: &mut dyn Iterator<Item = (&str, ModelPrice)>| {
        entries
            .filter(|(k, _)| model == *k || model.starts_with(&format!("{k}-")))
            .max_by_key(|(k, _)| k.len())
            .map(|(k, p)| (k.to_string(), p))
    };
    if let Some((entry, price)) = longest(&mut overrides.iter().map(|(k, v)| (k.as_str(), *v))) {
        return Some(Priced {
            entry,
            price,
            source: "stack.toml [prices]".into(),
        });
    }
    longest(&mut TABLE.iter().map(|(k, v)| (*k, *v))).map(|(entry, price)| Priced {
        entry,
        price,
        source: format!("built-in table of {TABLE_DATE} ({TABLE_SOURCE})"),
    })
}

/// Tokens in dollars.
pub fn cost_usd(p: &ModelPrice, input: u64, output: u64, cache_write: u64, cache_read: u64) -> f64 {
    (input as f64 * p.input
        + output as f64 * p.output
        + cache_write as f64 * p.cache_write
        + cache_read as f64 * p.cache_read)
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_ids_take_their_familys_price_and_overrides_win() {
        let none = BTreeMap::new();
        let h = price_of("claude-haiku-4-5-20251001", &none).unwrap();
        assert_eq!(h.entry, "claude-haiku-4-5");
        assert!(h.source.contains(TABLE_DATE));
        // The longest prefix: opus-4-1 is not opus-4.
        assert_eq!(
            price_of("claude-opus-4-1", &none).unwrap().price.output,
            75.0
        );
        assert_eq!(
            price_of("claude-opus-4-5", &none).unwrap().price.output,
            25.0
        );
        assert!(price_of("claude-unknown", &none).is_none());
        let mut o = BTreeMap::new();
        o.insert("claude-haiku-4-5".to_string(), p(2.0, 10.0, 0.0, 0.0));
        let h = price_of("claude-haiku-4-5", &o).unwrap();
        assert_eq!(h.price.output, 10.0);
        assert_eq!(h.source, "stack.toml [prices]");
        assert_eq!(cost_usd(&h.price, 1_000_000, 100_000, 0, 0), 3.0);
    }
}

/// The price of the dearest of `models` by output tokens (`*`: the dearest in the table and
/// `[prices]`); `None` when no model has a price.
pub fn dearest_output(
    models: &[String],
    overrides: &BTreeMap<String, ModelPrice>,
) -> Option<Priced> {
    let any = models.iter().any(|m| m == "*");
    let candidates: Vec<String> = if any {
        TABLE
            .iter()
            .map(|(k, _)| k.to_string())
            .chain(overrides.keys().cloned())
            .collect()
    } else {
        models.to_vec()
    };
    candidates
        .iter()
        .filter_map(|m| price_of(m, overrides))
        .max_by(|a, b| a.price.output.total_cmp(&b.price.output))
}

/// The most the stack can spend on output tokens per hour: every one of `reserved` slots busy
/// all hour with requests of `expected_duration_seconds`, each producing `max_tokens_cap`
/// output tokens of the dearest of `models` (`*`: the dearest in the table). With the price
/// used; `None` when no model has a price.
pub fn worst_case_output_usd_per_hour(
    reserved: u32,
    max_tokens_cap: u32,
    expected_duration_seconds: f64,
    models: &[String],
    overrides: &BTreeMap<String, ModelPrice>,
) -> Option<(f64, Priced)> {
    let dearest = dearest_output(models, overrides)?;
    let requests_per_hour = 3600.0 / expected_duration_seconds.max(1.0);
    let tokens = f64::from(reserved) * requests_per_hour * f64::from(max_tokens_cap);
    Some((tokens * dearest.price.output / 1_000_000.0, dearest))
}

#[cfg(test)]
mod worst_case_tests {
    use super::*;

    #[test]
    fn the_dearest_allowed_model_at_full_use() {
        let models = vec![
            "claude-haiku-4-5".to_string(),
            "claude-sonnet-4-5".to_string(),
        ];
        // 2 slots × 180 requests/hour × 4096 tokens × $15/MTok.
        let (usd, p) =
            worst_case_output_usd_per_hour(2, 4096, 20.0, &models, &BTreeMap::new()).unwrap();
        assert_eq!(p.entry, "claude-sonnet-4-5");
        assert!((usd - 2.0 * 180.0 * 4096.0 * 15.0 / 1e6).abs() < 1e-9);
        let (_, p) =
            worst_case_output_usd_per_hour(1, 1, 20.0, &["*".into()], &BTreeMap::new()).unwrap();
        assert_eq!(p.price.output, 75.0);
        assert!(
            worst_case_output_usd_per_hour(1, 1, 20.0, &["x".into()], &BTreeMap::new()).is_none()
        );
    }
}
