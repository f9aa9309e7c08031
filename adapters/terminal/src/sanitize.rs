//! Text from outside (model replies, provider errors, device codes, verification URLs) made
//! safe for a terminal: no character of it can drive the terminal.
//!
//! A reply shaped by a prompt injection could otherwise set the window title, clear the screen,
//! write the clipboard (OSC 52) or show a link whose text hides its target (OSC 8). Every escape
//! sequence starts with a C0 or C1 control character, so making those visible defuses them all;
//! the bidirectional overrides that reorder what is shown (a "Trojan Source" line) are made
//! visible too.

use std::borrow::Cow;

/// `text` with every control character except newline and tab made visible: C0 controls and
/// DEL as their Unicode control pictures (`ESC` shows as `␛`), C1 controls and bidirectional
/// overrides as `\u{…}`. A carriage return is dropped, so `\r\n` line ends stay line ends and a
/// line cannot be overwritten with another.
pub(crate) fn for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_care) {
        return Cow::Borrowed(text);
    }
    let mut safe = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => {}
            c if !needs_care(c) => safe.push(c),
            '\u{0}'..='\u{1f}' => {
                // Control pictures: U+2400 SYMBOL FOR NULL onwards, in the order of C0.
                safe.push(char::from_u32(0x2400 + u32::from(c)).unwrap_or('\u{fffd}'));
            }
            '\u{7f}' => safe.push('\u{2421}'),
            c => safe.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    Cow::Owned(safe)
}

fn needs_care(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        // C0, DEL and C1.
        c if c.is_control() => true,
        // Bidirectional embeddings, overrides and isolates.
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escape_sequences_lose_their_escape() {
        assert_eq!(
            for_terminal("\x1b]0;pwned\x07title"),
            "\u{241b}]0;pwned\u{2407}title"
        );
        assert_eq!(
            for_terminal("\x1b]52;c;ZXZpbA==\x1b\\"),
            "\u{241b}]52;c;ZXZpbA==\u{241b}\\"
        );
        assert_eq!(for_terminal("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(for_terminal("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(for_terminal("del\x7f"), "del\u{2421}");
    }

    #[test]
    fn newlines_and_tabs_stay_and_carriage_returns_go() {
        assert_eq!(for_terminal("one\r\ntwo\tthree\n"), "one\ntwo\tthree\n");
        assert_eq!(for_terminal("shown\rhidden"), "shownhidden");
        assert!(matches!(for_terminal("plain ✓ text"), Cow::Borrowed(_)));
    }

    proptest! {
        #[test]
        fn nothing_that_reaches_the_terminal_is_a_control_but_newline_and_tab(text in any::<String>()) {
            let safe = for_terminal(&text);
            prop_assert!(safe.chars().all(|c| c == '\n' || c == '\t' || !needs_care(c)));
            prop_assert_eq!(
                safe.matches('\n').count(),
                text.matches('\n').count()
            );
        }
    }
}
