//! What every endpoint parses and answers the same way: strict forms and JSON, OAuth errors,
//! PKCE, random values, the unsigned JWT, HTML.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// Request parameters, each present at most once (RFC 6749 §3.1: "Request and response
/// parameters MUST NOT be included more than once").
#[derive(Debug, Default)]
pub(super) struct Params(BTreeMap<String, String>);

impl Params {
    /// Parses a query string or a form body.
    pub(super) fn parse_urlencoded(input: &[u8]) -> Result<Self, OAuthError> {
        let mut params = BTreeMap::new();
        for (name, value) in url::form_urlencoded::parse(input) {
            if params
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                return Err(OAuthError::invalid_request(format!(
                    "parameter '{name}' is repeated"
                )));
            }
        }
        Ok(Self(params))
    }

    /// Parses a form body, refusing any other content type.
    pub(super) fn form(headers: &HeaderMap, body: &[u8]) -> Result<Self, OAuthError> {
        if !has_content_type(headers, "application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "this endpoint expects Content-Type: application/x-www-form-urlencoded",
            ));
        }
        Self::parse_urlencoded(body)
    }

    /// Parses a JSON object of string values, refusing any other content type.
    pub(super) fn json(headers: &HeaderMap, body: &[u8]) -> Result<Self, OAuthError> {
        if !has_content_type(headers, "application/json") {
            return Err(OAuthError::invalid_request(
                "this endpoint expects Content-Type: application/json",
            ));
        }
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
            return Err(OAuthError::invalid_request("the body is not a JSON object"));
        };
        let mut params = BTreeMap::new();
        for (name, value) in object {
            let Value::String(value) = value else {
                return Err(OAuthError::invalid_request(format!(
                    "parameter '{name}' must be a string"
                )));
            };
            params.insert(name, value);
        }
        Ok(Self(params))
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A parameter that must be present and non-empty.
    pub(super) fn require(&self, name: &str) -> Result<&str, OAuthError> {
        match self.get(name) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(OAuthError::invalid_request(format!(
                "missing required parameter '{name}'"
            ))),
        }
    }
}

/// Whether the request's media type (parameters such as `charset` aside) is `expected`.
pub(super) fn has_content_type(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(expected))
}

/// A header's value as text, if present and readable.
pub(super) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The token of an `Authorization: Bearer` header.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = header_str(headers, "authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// The client's identity at a token endpoint: HTTP Basic (RFC 6749 §2.3.1, id and secret
/// form-encoded before base64) or `client_id`/`client_secret` in the body, never both.
pub(super) struct ClientAuth {
    pub(super) client_id: String,
    pub(super) client_secret: Option<String>,
}

impl ClientAuth {
    pub(super) fn from_request(headers: &HeaderMap, params: &Params) -> Result<Self, OAuthError> {
        let basic = header_str(headers, "authorization")
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
        let Some((_, encoded)) = basic else {
            return Ok(Self {
                client_id: params.require("client_id")?.to_owned(),
                client_secret: params.get("client_secret").map(str::to_owned),
            });
        };
        if params.get("client_secret").is_some() {
            return Err(OAuthError::invalid_request(
                "the client authenticated both with HTTP Basic and in the body",
            ));
        }
        let decoded = STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| OAuthError::invalid_client("malformed HTTP Basic credentials"))?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or_else(|| OAuthError::invalid_client("malformed HTTP Basic credentials"))?;
        let client_id = form_decode(id)?;
        if params
            .get("client_id")
            .is_some_and(|body_id| body_id != client_id)
        {
            return Err(OAuthError::invalid_request(
                "client_id in the body differs from the HTTP Basic one",
            ));
        }
        Ok(Self {
            client_id,
            client_secret: Some(form_decode(secret)?),
        })
    }
}

fn form_decode(component: &str) -> Result<String, OAuthError> {
    if component.contains(['&', '=']) {
        return Err(OAuthError::invalid_client(
            "HTTP Basic credentials must be form-encoded",
        ));
    }
    Ok(url::form_urlencoded::parse(component.as_bytes())
        .next()
        .map(|(name, _)| name.into_owned())
        .unwrap_or_default())
}

/// An OAuth error response: `{"error", "error_description"}`.
#[derive(Debug)]
pub(super) struct OAuthError {
    pub(super) status: StatusCode,
    pub(super) error: &'static str,
    pub(super) description: String,
}

impl OAuthError {
    pub(super) fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    pub(super) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(super) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(super) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub(super) fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        no_store(self.status, body)
    }
}

/// A JSON answer that caches must not keep (RFC 6749 §5.1).
pub(super) fn no_store(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `{"error": code}` with `status`.
pub(super) fn json_error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(json!({"error": code}))).into_response()
}

/// `BASE64URL(SHA256(verifier))`, the S256 challenge of RFC 7636.
pub(super) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
pub(super) fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// An S256 challenge is the unpadded base64url of 32 bytes: 43 characters.
pub(super) fn is_valid_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks the PKCE parameters of an authorize or device code request.
pub(super) fn check_pkce_request(params: &Params) -> Result<String, OAuthError> {
    let challenge = params.require("code_challenge")?;
    match params.get("code_challenge_method") {
        Some("S256") => {}
        Some(other) => {
            return Err(OAuthError::invalid_request(format!(
                "code_challenge_method '{other}' is not supported; use S256"
            )))
        }
        None => {
            return Err(OAuthError::invalid_request(
                "missing required parameter 'code_challenge_method' (S256)",
            ))
        }
    }
    if !is_valid_s256_challenge(challenge) {
        return Err(OAuthError::invalid_request(
            "code_challenge is not an S256 challenge",
        ));
    }
    Ok(challenge.to_owned())
}

/// Checks a `code_verifier` against the challenge of the grant.
pub(super) fn check_verifier(params: &Params, challenge: &str) -> Result<(), OAuthError> {
    let verifier = params.require("code_verifier")?;
    if !is_valid_verifier(verifier) {
        return Err(OAuthError::invalid_request(
            "code_verifier must be 43 to 128 unreserved characters",
        ));
    }
    if s256(verifier) != challenge {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    Ok(())
}

/// Whether a space-separated scope list is exactly `expected` (in any order, no repeats).
pub(super) fn check_scope(scope: &str, expected: &[&str]) -> Result<(), OAuthError> {
    let mut given: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    given.sort_unstable();
    let mut wanted = expected.to_vec();
    wanted.sort_unstable();
    if given == wanted {
        Ok(())
    } else {
        Err(OAuthError::invalid_scope(format!(
            "the scope must be exactly '{}'",
            expected.join(" ")
        )))
    }
}

/// A random alphanumeric string.
pub(super) fn random_token(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

/// A user code of the form `ABCD-EFGH`, without easily confused letters.
pub(super) fn user_code() -> String {
    const LETTERS: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let mut rng = rand::rng();
    let mut pick = || char::from(LETTERS[rng.random_range(0..LETTERS.len())]);
    let first: String = (0..4).map(|_| pick()).collect();
    let second: String = (0..4).map(|_| pick()).collect();
    format!("{first}-{second}")
}

/// An unsigned JWT (`alg: none`) with `payload`; clients read it without checking a signature.
pub(super) fn unsigned_jwt(payload: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let signature = URL_SAFE_NO_PAD.encode(b"simulated-signature");
    format!("{header}.{payload}.{signature}")
}

/// The current Unix time in seconds.
pub(super) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A small HTML page.
pub(super) fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body><h1>{}</h1>\n{body}\n</body></html>\n",
        html_escape::encode_quoted_attribute(title),
        html_escape::encode_quoted_attribute(title)
    );
    (status, axum::response::Html(page)).into_response()
}

/// Appends query parameters to a URL that may already have a query.
pub(super) fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}

/// Splits a reply into the pieces a stream sends, word by word.
pub(super) fn stream_pieces(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_the_rfc_7636_example() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(Params::parse_urlencoded(b"a=1&a=2").is_err());
        let p = Params::parse_urlencoded(b"a=1&b=x+y").unwrap();
        assert_eq!(p.get("b"), Some("x y"));
    }

    #[test]
    fn scopes_compare_as_sets() {
        assert!(check_scope("b a", &["a", "b"]).is_ok());
        assert!(check_scope("a", &["a", "b"]).is_err());
        assert!(check_scope("a b c", &["a", "b"]).is_err());
    }

    #[test]
    fn jwt_has_three_base64url_parts() {
        let jwt = unsigned_jwt(&json!({"email": "a@b"}));
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(payload["email"], "a@b");
    }
}
