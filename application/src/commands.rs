//! The slash commands of the REPL, parsed from a line as the user typed it.
//!
//! The REPL, the non-terminal line mode and `llxprt WORDS...` all parse through here, so every
//! front end accepts the same commands and gives the same one-line errors.

use llxprt_domain::{BucketName, ChatProvider, OAuthProvider};

use crate::settings::StorageBackend;

/// What a line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A message to the active provider (any line not starting with `/`).
    Message(String),
    /// `/auth`: every provider's status.
    AuthOverview,
    /// `/auth P` or `/auth P status`.
    AuthStatus(OAuthProvider),
    /// `/auth P enable`.
    AuthEnable(OAuthProvider),
    /// `/auth P disable`.
    AuthDisable(OAuthProvider),
    /// `/auth P login [BUCKET]`.
    AuthLogin(OAuthProvider, BucketName),
    /// `/auth codex login [BUCKET] --device`: the device login, for machines without a browser.
    AuthDeviceLogin(OAuthProvider, BucketName),
    /// `/auth P logout [BUCKET | --all]`.
    AuthLogout(OAuthProvider, LogoutTarget),
    /// `/auth P clear BUCKET`: lift the bucket's cooldown or `[refused]` mark by hand.
    AuthClear(OAuthProvider, BucketName),
    /// `/provider [P]`.
    Provider(Option<ChatProvider>),
    /// `/model [M]`.
    Model(Option<String>),
    /// `/key KEY`: the session's key (the value is a secret; never echo it).
    Key(String),
    /// `/key` alone: ask for the key without echoing it.
    AskKey,
    /// `/keyfile PATH`.
    KeyFile(String),
    /// `/set NAME VALUE`.
    Set(String, String),
    /// `/profile save model NAME [BUCKET...]`.
    ProfileSaveModel(String, Vec<BucketName>),
    /// `/profile save loadbalancer NAME POLICY PROFILE...`.
    ProfileSaveLoadBalancer(String, String, Vec<String>),
    /// `/profile load NAME`.
    ProfileLoad(String),
    /// `/profile list`.
    ProfileList,
    /// `/profile delete NAME`.
    ProfileDelete(String),
    /// `/profile set-default NAME`.
    ProfileSetDefault(String),
    /// `/stats buckets`.
    StatsBuckets,
    /// `/stats quota`.
    StatsQuota,
    /// `/storage`: where tokens are kept.
    Storage,
    /// `/storage migrate BACKEND`.
    StorageMigrate(StorageBackend),
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
    /// An empty line: nothing to do.
    Nothing,
}

/// Which buckets `/auth P logout` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutTarget {
    /// One bucket (the default bucket when none is named).
    Bucket(BucketName),
    /// Every bucket of the provider (`--all`).
    All,
}

/// A line that is not a valid command: the message says what is wrong and what would work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

/// Every command word, for `/help` and tab completion.
pub const COMMANDS: [&str; 12] = [
    "/auth",
    "/provider",
    "/model",
    "/key",
    "/keyfile",
    "/set",
    "/profile",
    "/stats",
    "/storage",
    "/help",
    "/quit",
    "/exit",
];

/// The subcommands of `/auth P`.
pub const AUTH_SUBCOMMANDS: [&str; 6] = ["status", "enable", "disable", "login", "logout", "clear"];

/// The subcommands of `/profile`.
pub const PROFILE_SUBCOMMANDS: [&str; 5] = ["save", "load", "list", "delete", "set-default"];

/// The longest piece of the user's input an error message repeats.
const MAX_ECHO_CHARS: usize = 40;

/// What the user typed, as an error message repeats it: cut short, so a pasted page does not
/// come back as a page-long error line.
pub(crate) fn shown(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn unknown_provider(e: llxprt_domain::UnknownProvider) -> CommandError {
    err(llxprt_domain::UnknownProvider {
        given: shown(&e.given),
        ..e
    }
    .to_string())
}

fn err(message: impl Into<String>) -> CommandError {
    CommandError(message.into())
}

fn bucket(text: &str) -> Result<BucketName, CommandError> {
    BucketName::parse(text).map_err(|e| err(format!("invalid bucket name '{}': {e}", shown(text))))
}

fn no_more(words: &[&str], usage: &str) -> Result<(), CommandError> {
    match words.first() {
        None => Ok(()),
        Some(extra) => Err(err(format!(
            "unexpected '{}'; usage: {usage}",
            shown(extra)
        ))),
    }
}

/// Parses one line as typed in the REPL.
///
/// # Errors
/// [`CommandError`] naming what is wrong and what would work.
pub fn parse(line: &str) -> Result<Command, CommandError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Command::Nothing);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Command::Message(line.to_owned()));
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let Some((&name, args)) = words.split_first() else {
        return Err(err("empty command; type /help for the list of commands"));
    };
    match name {
        "auth" => parse_auth(args),
        "provider" => match args {
            [] => Ok(Command::Provider(None)),
            [p] => p
                .parse::<ChatProvider>()
                .map(|p| Command::Provider(Some(p)))
                .map_err(unknown_provider),
            [_, extra, ..] => Err(err(format!(
                "unexpected '{}'; usage: /provider [P]",
                shown(extra)
            ))),
        },
        "model" => match args {
            [] => Ok(Command::Model(None)),
            [m] => Ok(Command::Model(Some((*m).to_owned()))),
            [_, extra, ..] => Err(err(format!(
                "unexpected '{}'; usage: /model [M]",
                shown(extra)
            ))),
        },
        "key" => match args {
            [] => Ok(Command::AskKey),
            [k] => Ok(Command::Key((*k).to_owned())),
            _ => Err(err(
                "usage: /key [KEY] (alone, it asks for the key without showing it)",
            )),
        },
        "keyfile" => match args {
            [p] => Ok(Command::KeyFile((*p).to_owned())),
            _ => Err(err("usage: /keyfile PATH")),
        },
        "set" => match args {
            [n, v] => Ok(Command::Set((*n).to_owned(), (*v).to_owned())),
            [n] if n.contains('=') => {
                let (n, v) = n.split_once('=').unwrap_or((n, ""));
                Ok(Command::Set(n.to_owned(), v.to_owned()))
            }
            _ => Err(err("usage: /set NAME VALUE (e.g. /set auth-key KEY)")),
        },
        "profile" => parse_profile(args),
        "stats" => match args {
            ["buckets"] => Ok(Command::StatsBuckets),
            ["quota"] => Ok(Command::StatsQuota),
            _ => Err(err("usage: /stats buckets|quota")),
        },
        "storage" => match args {
            [] => Ok(Command::Storage),
            ["migrate", backend] => backend
                .parse()
                .map(Command::StorageMigrate)
                .map_err(|e| err(e.to_string())),
            _ => Err(err("usage: /storage [migrate file|keyring|encrypted|auto]")),
        },
        "help" => no_more(args, "/help").map(|()| Command::Help),
        "quit" | "exit" => no_more(args, "/quit").map(|()| Command::Quit),
        other => Err(err(format!(
            "unknown command '/{}'; commands are: {}",
            shown(other),
            COMMANDS.join(", ")
        ))),
    }
}

fn parse_auth(args: &[&str]) -> Result<Command, CommandError> {
    // `/auth status` is `/auth` (cli.md), so that `llxprt auth status` works too.
    let (p, rest) = match args {
        [] | ["status"] => return Ok(Command::AuthOverview),
        [p, rest @ ..] => (p, rest),
    };
    let provider: OAuthProvider = p.parse().map_err(unknown_provider)?;
    let usage = "/auth P [status|enable|disable|login [BUCKET] [--device]|logout [BUCKET|--all]|clear BUCKET]";
    match rest {
        [] | ["status"] => Ok(Command::AuthStatus(provider)),
        ["enable"] => Ok(Command::AuthEnable(provider)),
        ["disable"] => Ok(Command::AuthDisable(provider)),
        ["login", "--device"] => device_login(provider, BucketName::default_bucket()),
        ["login", b, "--device"] | ["login", "--device", b] => device_login(provider, bucket(b)?),
        ["login"] => Ok(Command::AuthLogin(provider, BucketName::default_bucket())),
        ["login", b] => Ok(Command::AuthLogin(provider, bucket(b)?)),
        ["logout"] => Ok(Command::AuthLogout(
            provider,
            LogoutTarget::Bucket(BucketName::default_bucket()),
        )),
        ["logout", "--all"] => Ok(Command::AuthLogout(provider, LogoutTarget::All)),
        ["logout", b] => Ok(Command::AuthLogout(
            provider,
            LogoutTarget::Bucket(bucket(b)?),
        )),
        ["clear", b] => Ok(Command::AuthClear(provider, bucket(b)?)),
        [sub, ..] if !AUTH_SUBCOMMANDS.contains(sub) => Err(err(format!(
            "unknown /auth subcommand '{}'; usage: {usage}",
            shown(sub)
        ))),
        _ => Err(err(format!("usage: {usage}"))),
    }
}

/// `--device` exists only where the provider has a device login to offer besides its usual one.
fn device_login(provider: OAuthProvider, bucket: BucketName) -> Result<Command, CommandError> {
    match provider {
        OAuthProvider::Codex => Ok(Command::AuthDeviceLogin(provider, bucket)),
        OAuthProvider::Qwen => Err(err(
            "qwen always signs in with a device code; run `/auth qwen login` without --device",
        )),
        other => Err(err(format!(
            "{other} has no device login (--device is codex's); run `/auth {other} login`, \
             or start llxprt with --nobrowser to paste the code"
        ))),
    }
}

fn parse_profile(args: &[&str]) -> Result<Command, CommandError> {
    let owned = |s: &&str| (*s).to_owned();
    match args {
        ["save", "model", name, buckets @ ..] => Ok(Command::ProfileSaveModel(
            owned(name),
            buckets.iter().map(|b| bucket(b)).collect::<Result<_, _>>()?,
        )),
        ["save", "loadbalancer", name, policy, members @ ..] if !members.is_empty() => {
            Ok(Command::ProfileSaveLoadBalancer(
                owned(name),
                owned(policy),
                members.iter().map(owned).collect(),
            ))
        }
        ["save", ..] => Err(err(
            "usage: /profile save model NAME [BUCKET...] | /profile save loadbalancer NAME failover|roundrobin PROFILE...",
        )),
        ["load", name] => Ok(Command::ProfileLoad(owned(name))),
        ["list"] => Ok(Command::ProfileList),
        ["delete", name] => Ok(Command::ProfileDelete(owned(name))),
        ["set-default", name] => Ok(Command::ProfileSetDefault(owned(name))),
        [sub, ..] if !PROFILE_SUBCOMMANDS.contains(sub) => Err(err(format!(
            "unknown /profile subcommand '{}'; subcommands are: {}",
            shown(sub),
            PROFILE_SUBCOMMANDS.join(", ")
        ))),
        [sub, ..] => Err(err(format!("usage: /profile {sub} NAME"))),
        [] => Err(err(format!(
            "usage: /profile {}",
            PROFILE_SUBCOMMANDS.join("|")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> BucketName {
        BucketName::parse(s).unwrap()
    }

    #[test]
    fn device_login_is_codex_only_and_the_others_say_what_to_run() {
        use OAuthProvider::*;
        assert_eq!(
            parse("/auth codex login --device"),
            Ok(Command::AuthDeviceLogin(Codex, b("default")))
        );
        for line in [
            "/auth codex login work1 --device",
            "/auth codex login --device work1",
        ] {
            assert_eq!(
                parse(line),
                Ok(Command::AuthDeviceLogin(Codex, b("work1"))),
                "{line}"
            );
        }
        for (line, hint) in [
            ("/auth gemini login --device", "/auth gemini login"),
            ("/auth anthropic login w --device", "/auth anthropic login"),
            ("/auth qwen login --device", "/auth qwen login"),
        ] {
            let e = parse(line).unwrap_err().0;
            assert!(e.contains(hint) && e.contains("--device"), "{line}: {e}");
        }
    }

    #[test]
    fn parses_every_auth_form() {
        use OAuthProvider::*;
        assert_eq!(parse("/auth"), Ok(Command::AuthOverview));
        assert_eq!(parse("/auth status"), Ok(Command::AuthOverview));
        assert_eq!(parse("/auth qwen"), Ok(Command::AuthStatus(Qwen)));
        assert_eq!(parse("/auth qwen status"), Ok(Command::AuthStatus(Qwen)));
        assert_eq!(
            parse("/auth gemini enable"),
            Ok(Command::AuthEnable(Gemini))
        );
        assert_eq!(
            parse("/auth gemini disable"),
            Ok(Command::AuthDisable(Gemini))
        );
        assert_eq!(
            parse("/auth anthropic login"),
            Ok(Command::AuthLogin(Anthropic, b("default")))
        );
        assert_eq!(
            parse("/auth anthropic login work1@company.com"),
            Ok(Command::AuthLogin(Anthropic, b("work1@company.com")))
        );
        assert_eq!(
            parse("/auth codex logout --all"),
            Ok(Command::AuthLogout(Codex, LogoutTarget::All))
        );
        assert_eq!(
            parse("/auth codex logout"),
            Ok(Command::AuthLogout(
                Codex,
                LogoutTarget::Bucket(b("default"))
            ))
        );
    }

    #[test]
    fn errors_say_what_is_wrong_and_what_works() {
        let e = parse("/auth claude").unwrap_err().0;
        assert!(
            e.contains("claude") && e.contains("anthropic, gemini, qwen, codex"),
            "{e}"
        );
        let e = parse("/auth qwen frobnicate").unwrap_err().0;
        assert!(e.contains("frobnicate") && e.contains("login"), "{e}");
        let e = parse("/auth qwen login ../x").unwrap_err().0;
        assert!(e.contains("invalid bucket name"), "{e}");
        let e = parse("/frob").unwrap_err().0;
        assert!(e.contains("/frob") && e.contains("/auth"), "{e}");
        let e = parse("/provider codex").unwrap_err().0;
        assert!(e.contains("openai"), "{e}");
        assert!(parse("/profile").is_err());
        assert!(parse("/profile save loadbalancer lb failover").is_err());
        assert!(parse("/stats").is_err());
    }

    #[test]
    fn errors_repeat_at_most_a_short_piece_of_what_was_typed() {
        let long = "x".repeat(50_000);
        for line in [
            format!("/{long}"),
            format!("/auth {long}"),
            format!("/auth qwen {long}"),
            format!("/auth qwen login {long}"),
            format!("/provider {long}"),
            format!("/profile {long}"),
            format!("/help {long}"),
        ] {
            let e = parse(&line).unwrap_err().0;
            assert!(e.len() < 400, "{} characters: {}", e.len(), &e[..200]);
            assert!(e.contains("xxxx…"), "{e}");
        }
        assert_eq!(
            shown("é".repeat(41).as_str()),
            format!("{}…", "é".repeat(40))
        );
        assert_eq!(shown("short"), "short");
    }

    #[test]
    fn parses_the_rest() {
        assert_eq!(
            parse("  hello there "),
            Ok(Command::Message("hello there".into()))
        );
        assert_eq!(parse(""), Ok(Command::Nothing));
        assert_eq!(parse("/provider"), Ok(Command::Provider(None)));
        assert_eq!(
            parse("/provider openai"),
            Ok(Command::Provider(Some(ChatProvider::OpenAi)))
        );
        assert_eq!(
            parse("/model gpt-4.1"),
            Ok(Command::Model(Some("gpt-4.1".into())))
        );
        assert_eq!(
            parse("/set auth-key k"),
            Ok(Command::Set("auth-key".into(), "k".into()))
        );
        assert_eq!(
            parse("/profile save model ha a@b.c d"),
            Ok(Command::ProfileSaveModel(
                "ha".into(),
                vec![b("a@b.c"), b("d")]
            ))
        );
        assert_eq!(
            parse("/profile save loadbalancer lb roundrobin p1 p2"),
            Ok(Command::ProfileSaveLoadBalancer(
                "lb".into(),
                "roundrobin".into(),
                vec!["p1".into(), "p2".into()]
            ))
        );
        assert_eq!(parse("/profile list"), Ok(Command::ProfileList));
        assert_eq!(parse("/stats buckets"), Ok(Command::StatsBuckets));
        assert_eq!(parse("/stats quota"), Ok(Command::StatsQuota));
        assert_eq!(parse("/quit"), Ok(Command::Quit));
    }
}
