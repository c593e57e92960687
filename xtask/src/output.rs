//! Results for people (`Display`) or for programs (`--output json`, one JSON document on stdout).

use crate::flags::OutputFormat;
use anyhow::{Context, Result};
use serde::Serialize;
use std::fmt::Display;

pub fn emit<T: Display + Serialize>(format: OutputFormat, value: &T) -> Result<()> {
    match format {
        OutputFormat::Text => println!("{value}"),
        OutputFormat::Json => {
            let json =
                serde_json::to_string_pretty(value).context("serialising the output as JSON")?;
            println!("{json}");
        }
    }
    Ok(())
}
