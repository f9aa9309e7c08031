//! OAuth tokens and their freshness.

use std::collections::BTreeMap;

use crate::secret::Secret;
use crate::time::UnixSeconds;

/// How close to its expiry a token is refreshed before use.
pub const REFRESH_WINDOW_SECONDS: i64 = 30;

/// The lifetime assumed when a token response gives no `expires_in`.
pub const DEFAULT_LIFETIME_SECONDS: i64 = 3600;

/// Fields of a token file that llxprt does not know, carried through untouched.
///
/// Each value is the raw JSON text of the field as the storage adapter read it; the domain never
/// looks inside, so another client's fields survive every rewrite.
pub type UnknownFields = BTreeMap<String, String>;

/// An OAuth token set for one bucket, with the extras some providers add.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Token {
    /// The bearer token sent to the API.
    pub access_token: Secret,
    /// The token that buys a new access token, when the provider issued one.
    pub refresh_token: Option<Secret>,
    /// When the access token stops working.
    pub expiry: UnixSeconds,
    /// Usually `Bearer`.
    pub token_type: String,
    /// The granted scopes, space separated, as the provider returned them.
    pub scope: Option<String>,
    /// Qwen: the host or URL of the API that accepts this token.
    pub resource_url: Option<String>,
    /// Codex: the ChatGPT account id taken from the `id_token`.
    pub account_id: Option<String>,
    /// Codex: the OpenID Connect id token.
    pub id_token: Option<Secret>,
    /// Anything else found in the token file.
    pub unknown: UnknownFields,
}

/// Whether a token can be used as it is at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// More than the refresh window remains.
    Fresh,
    /// Still valid, but within the refresh window: refresh before use.
    RefreshSoon,
    /// Past its expiry.
    Expired,
}

impl Token {
    /// A token with only the required fields, the rest empty.
    pub fn new(access_token: Secret, expiry: UnixSeconds) -> Self {
        Self {
            access_token,
            refresh_token: None,
            expiry,
            token_type: "Bearer".to_owned(),
            scope: None,
            resource_url: None,
            account_id: None,
            id_token: None,
            unknown: UnknownFields::new(),
        }
    }

    /// Freshness at `now`.
    pub fn freshness(&self, now: UnixSeconds) -> Freshness {
        let left = self.expiry.seconds_since(now);
        if left <= 0 {
            Freshness::Expired
        } else if left <= REFRESH_WINDOW_SECONDS {
            Freshness::RefreshSoon
        } else {
            Freshness::Fresh
        }
    }

    /// Whether the token must be refreshed before it is used at `now`.
    pub fn needs_refresh(&self, now: UnixSeconds) -> bool {
        self.freshness(now) != Freshness::Fresh
    }

    /// Seconds of life left at `now` (negative once expired).
    pub fn seconds_left(&self, now: UnixSeconds) -> i64 {
        self.expiry.seconds_since(now)
    }

    /// The token after a refresh: the response's fields, keeping the old refresh token,
    /// `resource_url`, `id_token`, `account_id` and scope where the response left them out, and
    /// the old unknown fields under the new ones.
    pub fn merge_refresh(self, refreshed: Token) -> Token {
        let mut unknown = self.unknown;
        unknown.extend(refreshed.unknown);
        Token {
            access_token: refreshed.access_token,
            refresh_token: refreshed.refresh_token.or(self.refresh_token),
            expiry: refreshed.expiry,
            token_type: refreshed.token_type,
            scope: refreshed.scope.or(self.scope),
            resource_url: refreshed.resource_url.or(self.resource_url),
            account_id: refreshed.account_id.or(self.account_id),
            id_token: refreshed.id_token.or(self.id_token),
            unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expiry: i64) -> Token {
        Token::new(Secret::new("at"), UnixSeconds(expiry))
    }

    #[test]
    fn freshness_has_a_thirty_second_window() {
        let t = token(1000);
        assert_eq!(t.freshness(UnixSeconds(969)), Freshness::Fresh);
        assert_eq!(t.freshness(UnixSeconds(970)), Freshness::RefreshSoon);
        assert_eq!(t.freshness(UnixSeconds(999)), Freshness::RefreshSoon);
        assert_eq!(t.freshness(UnixSeconds(1000)), Freshness::Expired);
        assert!(!t.needs_refresh(UnixSeconds(900)));
        assert!(t.needs_refresh(UnixSeconds(990)));
    }

    #[test]
    fn a_refresh_keeps_what_the_response_left_out() {
        let mut old = token(10);
        old.refresh_token = Some(Secret::new("rt-old"));
        old.resource_url = Some("portal.qwen.ai".into());
        old.account_id = Some("acct".into());
        old.id_token = Some(Secret::new("idt"));
        old.unknown.insert("x_other_client".into(), "true".into());
        let fresh = token(4000);
        let merged = old.merge_refresh(fresh);
        assert_eq!(merged.expiry, UnixSeconds(4000));
        assert_eq!(merged.refresh_token, Some(Secret::new("rt-old")));
        assert_eq!(merged.resource_url.as_deref(), Some("portal.qwen.ai"));
        assert_eq!(merged.account_id.as_deref(), Some("acct"));
        assert_eq!(merged.id_token, Some(Secret::new("idt")));
        assert_eq!(
            merged.unknown.get("x_other_client").map(String::as_str),
            Some("true")
        );
    }

    #[test]
    fn a_rotated_refresh_token_replaces_the_old_one() {
        let mut old = token(10);
        old.refresh_token = Some(Secret::new("rt-1"));
        let mut fresh = token(20);
        fresh.refresh_token = Some(Secret::new("rt-2"));
        assert_eq!(
            old.merge_refresh(fresh).refresh_token,
            Some(Secret::new("rt-2"))
        );
    }
}
