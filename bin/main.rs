//! The composition root: parses the command line and wires adapters into services.

use clap::Parser;

/// llxprt: sign in to AI providers and stay signed in.
#[derive(Debug, Parser)]
#[command(name = "llxprt", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
