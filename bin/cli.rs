//! The command line, as `cli.md` fixes it.

use std::fmt;
use std::path::PathBuf;

use clap::Parser;
use llxprt_domain::{ChatProvider, Secret};

/// llxprt: sign in to AI providers and stay signed in.
#[derive(Debug, Parser)]
#[command(
    name = "llxprt",
    version,
    about,
    after_help = "With a terminal, llxprt is an interactive REPL (type /help). With stdin not a \
                  terminal, every line of stdin runs as if typed. With WORDS, it runs the slash \
                  command /WORDS once: llxprt auth anthropic status\n\nA key given with --key or \
                  --set auth-key=KEY is visible to other users in the process list (ps); use \
                  --keyfile PATH, the provider's API key variable, or /key in the REPL, which \
                  asks for the key without showing it."
)]
pub(crate) struct Cli {
    /// Send one message with the active provider, model and profile, print the reply and exit
    #[arg(
        short = 'p',
        long = "prompt",
        value_name = "TEXT",
        conflicts_with = "words"
    )]
    pub(crate) prompt: Option<String>,

    /// Start with this provider: anthropic, gemini, qwen or openai
    #[arg(long, value_name = "P")]
    pub(crate) provider: Option<ChatProvider>,

    /// Start with this model
    #[arg(long, value_name = "M")]
    pub(crate) model: Option<String>,

    /// Start with this saved profile loaded
    #[arg(long, value_name = "NAME")]
    pub(crate) profile: Option<String>,

    /// API key for the active provider (takes precedence over every other credential). Other
    /// users of this machine can read it in the process list: prefer --keyfile, the provider's
    /// environment variable, or /key typed in the REPL
    #[arg(long, value_name = "KEY", value_parser = secret)]
    pub(crate) key: Option<Secret>,

    /// Read the API key from this file (its surrounding white space is not part of the key)
    #[arg(long, value_name = "PATH")]
    pub(crate) keyfile: Option<PathBuf>,

    /// Set a setting for this run, e.g. --set providers.openai.base_url=URL (repeatable; an
    /// auth-key given here is visible in the process list like --key)
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = SettingParser)]
    pub(crate) settings: Vec<Setting>,

    /// Never launch a browser: print the URL and ask for the pasted redirect URL or code
    #[arg(long)]
    pub(crate) nobrowser: bool,

    /// Run every provider against simulated providers on loopback: no account, no network
    #[arg(long)]
    pub(crate) sandbox: bool,

    /// A slash command to run once, without its slash (e.g. auth anthropic status)
    #[arg(
        value_name = "WORDS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub(crate) words: Vec<String>,
}

/// One `--set NAME=VALUE`. The value may be a key (`auth-key`), so `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    pub(crate) name: String,
    pub(crate) value: String,
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=[redacted]", self.name)
    }
}

fn secret(text: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(text))
}

/// Parses `--set NAME=VALUE`. A hand-written parser because clap's own error would quote the
/// value, and a bare key typed without its name must not be echoed.
#[derive(Clone)]
struct SettingParser;

impl clap::builder::TypedValueParser for SettingParser {
    type Value = Setting;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Setting, clap::Error> {
        let refuse = || {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                "--set expects NAME=VALUE, e.g. --set auth-key=KEY\n",
            )
            .with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(refuse)?;
        match text.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => Ok(Setting {
                name: name.trim().to_owned(),
                value: value.to_owned(),
            }),
            _ => Err(refuse()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("llxprt").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn words_keep_their_flags() {
        let cli = parse(&["auth", "codex", "logout", "--all"]).unwrap();
        assert_eq!(cli.words, ["auth", "codex", "logout", "--all"]);
        let cli = parse(&["--nobrowser", "auth", "gemini", "login"]).unwrap();
        assert!(cli.nobrowser);
        assert_eq!(cli.words, ["auth", "gemini", "login"]);
    }

    #[test]
    fn every_flag_parses() {
        let cli = parse(&[
            "--provider",
            "openai",
            "--model",
            "gpt-4.1",
            "--profile",
            "ha",
            "--key",
            "sk-1",
            "--keyfile",
            "/k",
            "--set",
            "auth-key=a=b",
            "--set",
            "x=",
            "--sandbox",
            "-p",
            "hi",
        ])
        .unwrap();
        assert_eq!(cli.provider, Some(ChatProvider::OpenAi));
        assert_eq!(cli.model.as_deref(), Some("gpt-4.1"));
        assert_eq!(cli.profile.as_deref(), Some("ha"));
        assert_eq!(cli.key.as_ref().map(Secret::expose), Some("sk-1"));
        assert_eq!(cli.keyfile, Some(PathBuf::from("/k")));
        let settings: Vec<_> = cli
            .settings
            .iter()
            .map(|s| (s.name.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(settings, [("auth-key", "a=b"), ("x", "")]);
        assert!(cli.sandbox && !cli.nobrowser);
        assert_eq!(cli.prompt.as_deref(), Some("hi"));
    }

    #[test]
    fn bad_values_are_refused_without_echoing_secrets() {
        let e = parse(&["--set", "sk-secret"]).unwrap_err().to_string();
        assert!(e.contains("NAME=VALUE") && !e.contains("sk-secret"), "{e}");
        assert!(parse(&["--set", "=v"]).is_err());
        let e = parse(&["--provider", "codex"]).unwrap_err().to_string();
        assert!(e.contains("openai"), "{e}");
        assert!(parse(&["-p", "hi", "auth"]).is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let cli = parse(&["--key", "sk-hidden", "--set", "auth-key=sk-also"]).unwrap();
        let debug = format!("{cli:?}");
        assert!(
            !debug.contains("sk-hidden") && !debug.contains("sk-also"),
            "{debug}"
        );
    }
}
