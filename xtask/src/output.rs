//! Results for people (`Display`) or for programs (`--output json`, one JSON document on
//! stdout), and text meant for people only (plans, notes), which moves to stderr when stdout
//! carries JSON.

use crate::flags::{Common, OutputFormat};
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

/// Text for people: on stdout, or on stderr when stdout carries JSON.
pub fn show(common: &Common, text: impl Display) {
    match common.output {
        OutputFormat::Text => print!("{text}"),
        OutputFormat::Json => eprint!("{text}"),
    }
}

/// A plan, shown before it is applied (see [`show`]).
pub fn show_plan(common: &Common, plan: &infra::plan::Plan) {
    show(common, plan);
}
