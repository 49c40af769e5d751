//! `qus status [--json]`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::CommonArgs;
use crate::observe::Overrides;
use crate::{engine, status};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object (schema in the README) instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(common: &CommonArgs, args: &StatusArgs) -> Result<ExitCode> {
    let ctx = common.context()?;
    let plan = engine::survey(&ctx, &Overrides::default(), None)?;
    let report = status::build(&ctx, &plan);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", status::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}
