//! The token file format of `providers.md`, for every adapter that keeps tokens as JSON.
//!
//! ```json
//! { "access_token": "...", "refresh_token": "...", "expiry": 1767225600, "token_type": "Bearer",
//!   "scope": "...", "resource_url": "...", "account_id": "...", "id_token": "..." }
//! ```
//!
//! Reading is liberal so that files written by llxprt-code load as they are: `expiry` may be a
//! float, optional fields may be `null`, a missing `token_type` means `Bearer`. Every other field
//! is carried through as its raw JSON text, byte for byte, so another client's data survives our
//! rewrites.

use std::collections::HashMap;

use llxprt_domain::{Secret, Token, UnixSeconds};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::error::Category;
use serde_json::value::RawValue;

/// The fields this format gives a meaning to, in the order they are written.
pub const KNOWN_FIELDS: [&str; 8] = [
    "access_token",
    "refresh_token",
    "expiry",
    "token_type",
    "scope",
    "resource_url",
    "account_id",
    "id_token",
];

/// Why a text is not a token. The messages name fields, never their values, because values may
/// be secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenJsonError {
    /// The text is not JSON at all.
    #[error("it is not valid JSON (line {line}, column {column})")]
    Syntax {
        /// The line where reading stopped, from 1.
        line: usize,
        /// The column where reading stopped, from 1.
        column: usize,
    },
    /// The text is JSON but not an object.
    #[error("it is JSON but not an object")]
    NotAnObject,
    /// A required field is absent or `null`.
    #[error("the field `{0}` is missing")]
    MissingField(&'static str),
    /// A known field has a value of the wrong kind.
    #[error("the field `{field}` is not {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
}

/// Reads a token from the text of a token file.
///
/// # Errors
/// [`TokenJsonError`] saying what is wrong, without quoting any value.
pub fn token_from_json(text: &str) -> Result<Token, TokenJsonError> {
    let fields: HashMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|e| match e.classify() {
            Category::Data => TokenJsonError::NotAnObject,
            Category::Syntax | Category::Eof | Category::Io => TokenJsonError::Syntax {
                line: e.line(),
                column: e.column(),
            },
        })?;
    let string = |field: &'static str| -> Result<Option<String>, TokenJsonError> {
        fields.get(field).map_or(Ok(None), |raw| {
            serde_json::from_str::<Option<String>>(raw.get()).map_err(|_| {
                TokenJsonError::WrongType {
                    field,
                    expected: "a string",
                }
            })
        })
    };
    let access_token =
        string("access_token")?.ok_or(TokenJsonError::MissingField("access_token"))?;
    let expiry = fields
        .get("expiry")
        .filter(|raw| raw.get() != "null")
        .ok_or(TokenJsonError::MissingField("expiry"))
        .and_then(|raw| parse_expiry(raw.get()))?;
    let unknown = fields
        .iter()
        .filter(|(name, _)| !KNOWN_FIELDS.contains(&name.as_str()))
        .map(|(name, raw)| (name.clone(), raw.get().to_owned()))
        .collect();
    let mut token = Token::new(Secret::new(access_token), expiry);
    token.refresh_token = string("refresh_token")?.map(Secret::new);
    token.token_type = string("token_type")?.unwrap_or_else(|| "Bearer".to_owned());
    token.scope = string("scope")?;
    token.resource_url = string("resource_url")?;
    token.account_id = string("account_id")?;
    token.id_token = string("id_token")?.map(Secret::new);
    token.unknown = unknown;
    Ok(token)
}

/// Whole seconds, or fractional seconds rounded down (some writers divide milliseconds by 1000).
fn parse_expiry(raw: &str) -> Result<UnixSeconds, TokenJsonError> {
    let wrong = TokenJsonError::WrongType {
        field: "expiry",
        expected: "a number of Unix seconds",
    };
    let number: serde_json::Number = serde_json::from_str(raw).map_err(|_| wrong.clone())?;
    if let Some(seconds) = number.as_i64() {
        return Ok(UnixSeconds(seconds));
    }
    match number.as_f64() {
        // The range check keeps the cast from saturating a nonsense value into a plausible one.
        Some(f) if f.is_finite() && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
            Ok(UnixSeconds(f.floor() as i64))
        }
        _ => Err(wrong),
    }
}

/// Writes a token as the text of a token file: the known fields in the order of
/// [`KNOWN_FIELDS`] (absent ones left out), then the unknown fields, pretty-printed.
///
/// An unknown field whose text is not valid JSON (only a bug elsewhere can make one) is written
/// as a JSON string of that text rather than breaking the file; an unknown field named like a
/// known one is left out, so the file never holds a key twice.
pub fn token_to_json(token: &Token) -> String {
    // Invariant: serialising a map with string keys, strings, integers and validated raw JSON
    // into memory cannot fail.
    #[allow(clippy::expect_used)]
    let mut text =
        serde_json::to_string_pretty(&TokenFile(token)).expect("a token always serialises");
    text.push('\n');
    text
}

struct TokenFile<'a>(&'a Token);

impl Serialize for TokenFile<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("access_token", t.access_token.expose())?;
        if let Some(refresh) = &t.refresh_token {
            map.serialize_entry("refresh_token", refresh.expose())?;
        }
        map.serialize_entry("expiry", &t.expiry.0)?;
        map.serialize_entry("token_type", &t.token_type)?;
        for (name, value) in [
            ("scope", &t.scope),
            ("resource_url", &t.resource_url),
            ("account_id", &t.account_id),
        ] {
            if let Some(value) = value {
                map.serialize_entry(name, value)?;
            }
        }
        if let Some(id_token) = &t.id_token {
            map.serialize_entry("id_token", id_token.expose())?;
        }
        for (name, text) in &t.unknown {
            if KNOWN_FIELDS.contains(&name.as_str()) {
                continue;
            }
            match RawValue::from_string(text.clone()) {
                Ok(raw) => map.serialize_entry(name, &raw)?,
                Err(_) => map.serialize_entry(name, text)?,
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full_token() -> Token {
        let mut t = Token::new(Secret::new("at-1"), UnixSeconds(1_767_225_600));
        t.refresh_token = Some(Secret::new("rt-1"));
        t.scope = Some("openid profile email model.completion".into());
        t.resource_url = Some("portal.qwen.ai".into());
        t.account_id = Some("acct-1".into());
        t.id_token = Some(Secret::new("idt-1"));
        t
    }

    #[test]
    fn writes_exactly_the_fields_of_the_spec() {
        let text = token_to_json(&full_token());
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let object = value.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "access_token",
                "account_id",
                "expiry",
                "id_token",
                "refresh_token",
                "resource_url",
                "scope",
                "token_type"
            ]
        );
        assert_eq!(object["expiry"], serde_json::json!(1_767_225_600));
        assert_eq!(object["access_token"], "at-1");
        assert_eq!(object["token_type"], "Bearer");
    }

    #[test]
    fn absent_fields_are_left_out() {
        let text = token_to_json(&Token::new(Secret::new("at"), UnixSeconds(5)));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"access_token": "at", "expiry": 5, "token_type": "Bearer"})
        );
    }

    #[test]
    fn a_file_written_by_llxprt_code_loads_as_it_is() {
        let text = r#"{
  "access_token": "ya29.simulated",
  "refresh_token": "1//simulated",
  "expiry": 1767225600,
  "scope": null,
  "token_type": "Bearer",
  "resource_url": "portal.qwen.ai"
}"#;
        let t = token_from_json(text).unwrap();
        assert_eq!(t.access_token.expose(), "ya29.simulated");
        assert_eq!(
            t.refresh_token.as_ref().map(Secret::expose),
            Some("1//simulated")
        );
        assert_eq!(t.expiry, UnixSeconds(1_767_225_600));
        assert_eq!(t.scope, None);
        assert_eq!(t.resource_url.as_deref(), Some("portal.qwen.ai"));
        assert!(t.unknown.is_empty());
    }

    #[test]
    fn reading_is_liberal_about_expiry_and_token_type() {
        let t = token_from_json(r#"{"access_token":"a","expiry":1767225600.75}"#).unwrap();
        assert_eq!(t.expiry, UnixSeconds(1_767_225_600));
        assert_eq!(t.token_type, "Bearer");
        let t = token_from_json(r#"{"access_token":"a","expiry":7,"token_type":null}"#).unwrap();
        assert_eq!(t.token_type, "Bearer");
        let t =
            token_from_json(r#"{"access_token":"a","expiry":7,"token_type":"bearer"}"#).unwrap();
        assert_eq!(t.token_type, "bearer");
    }

    #[test]
    fn unknown_fields_survive_a_rewrite_byte_for_byte() {
        let text = r#"{"access_token":"a","expiry":7,"x_huge":123456789012345678901234567890,
            "x_float":1.50,"x_nested":{"b": [1, 2,{"c":null}]},"x_text":"caf\u00e9"}"#;
        let t = token_from_json(text).unwrap();
        assert_eq!(t.unknown["x_huge"], "123456789012345678901234567890");
        assert_eq!(t.unknown["x_float"], "1.50");
        assert_eq!(t.unknown["x_nested"], r#"{"b": [1, 2,{"c":null}]}"#);
        assert_eq!(t.unknown["x_text"], r#""caf\u00e9""#);
        let again = token_from_json(&token_to_json(&t)).unwrap();
        assert_eq!(again, t);
    }

    #[test]
    fn an_unknown_field_that_is_not_json_is_kept_as_a_string() {
        let mut t = Token::new(Secret::new("a"), UnixSeconds(1));
        t.unknown.insert("x_bad".into(), "not json {".into());
        t.unknown.insert("access_token".into(), "\"shadow\"".into());
        let again = token_from_json(&token_to_json(&t)).unwrap();
        assert_eq!(again.unknown["x_bad"], r#""not json {""#);
        assert_eq!(again.access_token.expose(), "a");
        assert!(!again.unknown.contains_key("access_token"));
    }

    #[test]
    fn errors_name_the_problem_never_the_secret() {
        let cases: [(&str, TokenJsonError); 7] = [
            ("", TokenJsonError::Syntax { line: 1, column: 0 }),
            (
                "{\"access_token\": \"sk-SECRET\"",
                TokenJsonError::Syntax {
                    line: 1,
                    column: 28,
                },
            ),
            ("\"sk-SECRET\"", TokenJsonError::NotAnObject),
            ("[\"sk-SECRET\"]", TokenJsonError::NotAnObject),
            (
                r#"{"refresh_token":"rt-SECRET","expiry":1}"#,
                TokenJsonError::MissingField("access_token"),
            ),
            (
                r#"{"access_token":"sk-SECRET","expiry":"rt-SECRET"}"#,
                TokenJsonError::WrongType {
                    field: "expiry",
                    expected: "a number of Unix seconds",
                },
            ),
            (
                r#"{"access_token":"sk-SECRET","expiry":1,"scope":["rt-SECRET"]}"#,
                TokenJsonError::WrongType {
                    field: "scope",
                    expected: "a string",
                },
            ),
        ];
        for (text, expected) in cases {
            let err = token_from_json(text).unwrap_err();
            assert_eq!(err, expected, "for {text:?}");
            assert!(!err.to_string().contains("SECRET"), "{err}");
        }
        assert_eq!(
            token_from_json(r#"{"access_token":"a"}"#).unwrap_err(),
            TokenJsonError::MissingField("expiry")
        );
        assert!(token_from_json(r#"{"access_token":"a","expiry":1e400}"#).is_err());
    }

    fn any_token() -> impl Strategy<Value = Token> {
        let text = "\\PC{0,20}";
        (
            (text, proptest::option::of(text), any::<i64>(), text),
            (
                proptest::option::of(text),
                proptest::option::of(text),
                proptest::option::of(text),
                proptest::option::of(text),
            ),
            proptest::collection::btree_map("x_[a-z]{1,8}", any::<i32>(), 0..4),
        )
            .prop_map(
                |((at, rt, expiry, token_type), (scope, url, account, id), unknown)| {
                    let mut token = Token::new(Secret::new(at), UnixSeconds(expiry));
                    token.refresh_token = rt.map(Secret::new);
                    token.token_type = token_type;
                    token.scope = scope;
                    token.resource_url = url;
                    token.account_id = account;
                    token.id_token = id.map(Secret::new);
                    token.unknown = unknown
                        .into_iter()
                        .map(|(k, v)| (k, v.to_string()))
                        .collect();
                    token
                },
            )
    }

    /// A JSON value of a kind a token file might hold, sound or not.
    fn any_json_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("[]".to_owned()),
            Just("{}".to_owned()),
            Just("1e400".to_owned()),
            "-?[0-9]{1,25}(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,4})?",
            "\\PC{0,12}".prop_map(|s| serde_json::Value::String(s).to_string()),
            r#"[\[\]{}":,a-z0-9.\\]{0,12}"#,
        ]
    }

    proptest! {
        #[test]
        fn every_token_round_trips(token in any_token()) {
            prop_assert_eq!(token_from_json(&token_to_json(&token)).unwrap(), token);
        }

        #[test]
        fn reading_never_panics_on_any_text(text in any::<String>()) {
            let _ = token_from_json(&text);
        }

        #[test]
        fn reading_never_panics_on_json_like_text(text in r#"[\[\]{}":,a-z_ 0-9.\-eE+\\]{0,120}"#) {
            let _ = token_from_json(&text);
        }

        #[test]
        fn whatever_is_read_is_written_back_the_same(
            fields in proptest::collection::vec(
                (prop_oneof![
                    proptest::sample::select(KNOWN_FIELDS.to_vec()).prop_map(str::to_owned),
                    "[a-z_]{1,8}",
                ], any_json_value()),
                0..10,
            )
        ) {
            let body: Vec<String> = fields
                .iter()
                .map(|(name, value)| format!("{}:{value}", serde_json::Value::String(name.clone())))
                .collect();
            let text = format!("{{{}}}", body.join(","));
            if let Ok(token) = token_from_json(&text) {
                prop_assert_eq!(token_from_json(&token_to_json(&token)).unwrap(), token);
            }
        }
    }
}
