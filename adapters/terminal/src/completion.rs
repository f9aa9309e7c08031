//! Tab completion: which words fit where the cursor is.
//!
//! [`complete`] is a pure function of the line, the cursor and the names the shell knows, so
//! every rule is unit-tested without a terminal; [`ReplHelper`] only hands it to rustyline.

use std::borrow::Cow;
use std::sync::{Arc, PoisonError, RwLock};

use llxprt_application::commands::{AUTH_SUBCOMMANDS, COMMANDS, PROFILE_SUBCOMMANDS};
use llxprt_application::shell::CompletionData;
use llxprt_domain::{ChatProvider, OAuthProvider};
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

/// The completions of the word under the cursor: the byte offset in `line` where that word
/// starts, and the sorted words that could replace it.
///
/// Only the text before the cursor counts. A cursor that is past the end or inside a
/// character is moved back to the nearest character boundary, so any input is safe.
pub fn complete(line: &str, cursor: usize, data: &CompletionData) -> (usize, Vec<String>) {
    let mut cursor = cursor.min(line.len());
    while !line.is_char_boundary(cursor) {
        cursor -= 1;
    }
    let before = &line[..cursor];
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &before[start..];
    let previous: Vec<&str> = before[..start].split_whitespace().collect();
    let mut candidates: Vec<String> = options_after(&previous, data)
        .into_iter()
        .filter(|option| option.starts_with(word))
        .collect();
    candidates.sort();
    candidates.dedup();
    (start, candidates)
}

/// Every word that may follow `previous` (the complete words before the cursor).
fn options_after(previous: &[&str], data: &CompletionData) -> Vec<String> {
    fn owned(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }
    let profiles = || data.profiles.clone();
    match previous {
        [] => owned(&COMMANDS),
        ["/auth"] => OAuthProvider::ALL
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        ["/auth", provider] if provider.parse::<OAuthProvider>().is_ok() => {
            owned(&AUTH_SUBCOMMANDS)
        }
        ["/auth", provider, "login" | "clear"] => buckets_of(provider, data),
        ["/auth", provider, "logout"] => {
            let mut options = buckets_of(provider, data);
            options.push("--all".to_owned());
            options
        }
        ["/provider"] => ChatProvider::ALL
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        ["/profile"] => owned(&PROFILE_SUBCOMMANDS),
        ["/profile", "load" | "delete" | "set-default"] => profiles(),
        ["/profile", "save"] => owned(&["model", "loadbalancer"]),
        ["/profile", "save", "model", _name, ..] => data
            .buckets
            .iter()
            .flat_map(|(_, buckets)| buckets.iter().cloned())
            .collect(),
        ["/profile", "save", "loadbalancer", _name] => owned(&["failover", "roundrobin"]),
        ["/profile", "save", "loadbalancer", _name, _policy, ..] => profiles(),
        ["/stats"] => owned(&["buckets", "quota"]),
        _ => Vec::new(),
    }
}

fn buckets_of(provider: &str, data: &CompletionData) -> Vec<String> {
    data.buckets
        .iter()
        .filter(|(name, _)| name == provider)
        .flat_map(|(_, buckets)| buckets.iter().cloned())
        .collect()
}

/// The rustyline helper of the REPL: completes through [`complete`] with the names the
/// REPL refreshes after every line.
pub(crate) struct ReplHelper {
    data: Arc<RwLock<CompletionData>>,
    /// A secret is being typed: the line is drawn as blanks and nothing is completed.
    pub(crate) masking: bool,
}

impl ReplHelper {
    pub(crate) fn new(data: Arc<RwLock<CompletionData>>) -> Self {
        Self {
            data,
            masking: false,
        }
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        if self.masking {
            return Ok((pos, Vec::new()));
        }
        // A writer that panicked left complete data behind (it replaces the whole value), so a
        // poisoned lock is still safe to read.
        let data = self.data.read().unwrap_or_else(PoisonError::into_inner);
        let (start, words) = complete(line, pos, &data);
        // A single match is finished: the space lets the user type the next word at once.
        let finished = words.len() == 1;
        let pairs = words
            .into_iter()
            .map(|word| Pair {
                replacement: if finished {
                    format!("{word} ")
                } else {
                    word.clone()
                },
                display: word,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

/// While a secret is typed the line is drawn as blanks, so the key never shows on the screen
/// (rustyline draws the line itself; the terminal does not echo).
impl Highlighter for ReplHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.masking {
            Cow::Owned(" ".repeat(line.chars().count()))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        self.masking && kind != CmdKind::MoveCursor
    }
}

impl Validator for ReplHelper {}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data() -> CompletionData {
        CompletionData {
            buckets: vec![
                (
                    "anthropic".into(),
                    vec!["default".into(), "work1@company.com".into()],
                ),
                ("qwen".into(), vec!["default".into(), "home".into()]),
            ],
            profiles: vec!["team-claude".into(), "ha".into()],
        }
    }

    fn at_end(line: &str) -> (usize, Vec<String>) {
        complete(line, line.len(), &data())
    }

    #[test]
    fn completes_command_words() {
        assert_eq!(at_end("/au"), (0, vec!["/auth".to_owned()]));
        assert_eq!(
            at_end("/p"),
            (0, vec!["/profile".to_owned(), "/provider".to_owned()])
        );
        assert_eq!(
            at_end("/key"),
            (0, vec!["/key".to_owned(), "/keyfile".to_owned()])
        );
        let (start, all) = at_end("");
        assert_eq!(start, 0);
        assert!(all.contains(&"/auth".to_owned()) && all.contains(&"/quit".to_owned()));
        assert_eq!(at_end("  /qu"), (2, vec!["/quit".to_owned()]));
    }

    #[test]
    fn messages_are_not_completed() {
        assert_eq!(at_end("hello"), (0, vec![]));
        assert_eq!(at_end("hello /au"), (6, vec![]));
    }

    #[test]
    fn auth_completes_providers_then_subcommands_then_that_providers_buckets() {
        assert_eq!(
            at_end("/auth "),
            (
                6,
                vec![
                    "anthropic".to_owned(),
                    "codex".to_owned(),
                    "gemini".to_owned(),
                    "qwen".to_owned()
                ]
            )
        );
        assert_eq!(at_end("/auth q"), (6, vec!["qwen".to_owned()]));
        assert_eq!(at_end("/auth qwen lo").1, vec!["login", "logout"]);
        assert_eq!(
            at_end("/auth anthropic login ").1,
            vec!["default", "work1@company.com"]
        );
        assert_eq!(
            at_end("/auth anthropic login w"),
            (22, vec!["work1@company.com".to_owned()])
        );
        assert_eq!(
            at_end("/auth qwen logout ").1,
            vec!["--all", "default", "home"]
        );
        assert_eq!(at_end("/auth gemini login ").1, Vec::<String>::new());
        assert_eq!(at_end("/auth claude ").1, Vec::<String>::new());
        assert_eq!(at_end("/auth qwen status ").1, Vec::<String>::new());
    }

    #[test]
    fn provider_completes_chat_providers() {
        assert_eq!(
            at_end("/provider ").1,
            vec!["anthropic", "gemini", "openai", "qwen"]
        );
        assert_eq!(at_end("/provider o").1, vec!["openai"]);
    }

    #[test]
    fn profile_completes_subcommands_then_profile_names() {
        assert_eq!(
            at_end("/profile ").1,
            vec!["delete", "list", "load", "save", "set-default"]
        );
        assert_eq!(at_end("/profile load ").1, vec!["ha", "team-claude"]);
        assert_eq!(at_end("/profile delete t").1, vec!["team-claude"]);
        assert_eq!(at_end("/profile set-default ").1, vec!["ha", "team-claude"]);
        assert_eq!(at_end("/profile save ").1, vec!["loadbalancer", "model"]);
        assert_eq!(
            at_end("/profile save loadbalancer lb ").1,
            vec!["failover", "roundrobin"]
        );
        assert_eq!(
            at_end("/profile save loadbalancer lb failover ha ").1,
            vec!["ha", "team-claude"]
        );
        assert_eq!(
            at_end("/profile save model mine ").1,
            vec!["default", "home", "work1@company.com"]
        );
        assert_eq!(at_end("/profile list ").1, Vec::<String>::new());
    }

    #[test]
    fn stats_completes_buckets() {
        assert_eq!(at_end("/stats ").1, vec!["buckets", "quota"]);
    }

    #[test]
    fn only_text_before_the_cursor_counts() {
        assert_eq!(
            complete("/auth qwen", 3, &data()),
            (0, vec!["/auth".to_owned()])
        );
    }

    #[test]
    fn cursor_inside_a_character_or_past_the_end_is_safe() {
        let line = "/auth é✓";
        for cursor in 0..line.len() + 10 {
            let (start, _) = complete(line, cursor, &data());
            assert!(start <= line.len() && line.is_char_boundary(start));
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_offers_only_words_that_extend_the_typed_one(
            line in "\\PC{0,200}",
            cursor in 0usize..400,
        ) {
            let (start, candidates) = complete(&line, cursor, &data());
            prop_assert!(line.is_char_boundary(start));
            let mut end = cursor.min(line.len());
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            let typed = &line[start..end];
            for candidate in candidates {
                prop_assert!(candidate.starts_with(typed), "{candidate} after {typed}");
            }
        }
    }
}
