//! The composition root: parses the command line, wires the shell and hands it to the front
//! end that fits how llxprt was started.

mod cli;
mod sandbox;
mod wiring;

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::Parser;
use llxprt_application::ports::UserPrompt as _;
use llxprt_terminal::{self as repl, TerminalPrompt};

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(io::stderr)
        .init();
    match run_to_the_end(cli) {
        Ok(exit) => exit,
        Err(error) => {
            // One line with every cause (`{:#}`): the `Debug` form that returning the error from
            // `main` prints spreads it over lines, and adds a backtrace under RUST_BACKTRACE.
            TerminalPrompt::output_only().show_error(&format!("Error: {error:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run_to_the_end(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    let exit = runtime.block_on(run(cli));
    // A question cancelled mid-read leaves a thread blocked on the terminal: do not wait for it.
    runtime.shutdown_background();
    exit
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let wired = wiring::wire(&cli).await?;
    let shell = wired.shell.clone();
    let exit = if let Some(text) = &cli.prompt {
        repl::run_one_shot(shell, text).await
    } else if !cli.words.is_empty() {
        repl::run_one_shot(shell, &repl::slash_command(&cli.words)).await
    } else if io::stdin().is_terminal() {
        repl::run_interactive(shell, &wired.history).await
    } else {
        repl::run_line_mode(shell, io::BufReader::new(io::stdin())).await
    };
    // Answers do not wait for their statistics; the process does, before it exits.
    wired.chat.flush_statistics().await;
    // Refreshed tokens reach their callers before their save ends; the save ends before exit.
    wired.tokens.finish_refreshes().await;
    Ok(exit.into())
}
