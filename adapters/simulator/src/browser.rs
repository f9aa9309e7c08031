//! A browser whose user always clicks "allow": for tests, and for a sandbox with no display.

use std::fmt;

use llxprt_domain::Secret;
use reqwest::header::LOCATION;

use super::SimulatorHandle;

/// How many redirects [`SimulatorHandle::browse`] follows before giving up.
const MAX_REDIRECTS: usize = 10;

/// What the provider did when the simulated user consented.
#[derive(Debug)]
pub enum Consent {
    /// The provider redirected to a page the simulator does not own (the client's loopback
    /// callback), with `code` and `state`, or `error`. It was not followed.
    Redirect(Secret),
    /// A provider page showed a code to paste: `CODE#STATE` for Anthropic, `CODE` on Gemini's
    /// manual page.
    CodeShown(Secret),
    /// Any other page, such as an error page (see [`Page::shown_error`]).
    Page(Page),
}

/// A page the simulated browser ended on.
pub struct Page {
    /// The page's URL (it may carry a code in its query).
    pub url: Secret,
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: String,
}

impl Page {
    /// The code shown in `<code id="auth-code">`, if the page shows one.
    pub fn shown_code(&self) -> Option<Secret> {
        element_text(&self.body, "auth-code").map(Secret::new)
    }

    /// The error shown in `<p id="auth-error">`, such as `access_denied: …`.
    pub fn shown_error(&self) -> Option<String> {
        element_text(&self.body, "auth-error")
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL and the body may hold a code: show neither.
        f.debug_struct("Page")
            .field("status", &self.status)
            .field("shown_error", &self.shown_error())
            .finish_non_exhaustive()
    }
}

/// The simulated browser could not load a page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrowseError {
    /// The request failed (nothing listening, connection reset, ...).
    #[error("the simulated browser could not load a page: {0}")]
    Request(String),
    /// A redirect had no usable `Location`.
    #[error("a redirect had no usable Location header")]
    BadRedirect,
    /// Redirects went on for too long.
    #[error("too many redirects")]
    TooManyRedirects,
}

impl SimulatorHandle {
    /// Opens `url` (an authorize URL) as a browser whose user consents, following redirects only
    /// while they stay on the simulator.
    ///
    /// # Errors
    /// [`BrowseError`] when a page cannot be loaded.
    pub async fn consent(&self, url: &str) -> Result<Consent, BrowseError> {
        let own = format!("{}/", self.endpoints().root);
        let mut current = url.to_owned();
        for _ in 0..MAX_REDIRECTS {
            match self.load(&current).await? {
                Loaded::Redirect(next) if next.starts_with(&own) => current = next,
                Loaded::Redirect(next) => return Ok(Consent::Redirect(Secret::new(next))),
                Loaded::Page(page) => {
                    return Ok(match page.shown_code() {
                        Some(code) => Consent::CodeShown(code),
                        None => Consent::Page(page),
                    })
                }
            }
        }
        Err(BrowseError::TooManyRedirects)
    }

    /// Opens `url` like a real browser: follows every redirect, the client's own loopback
    /// callback included, and returns the page it ends on. Visiting a device flow's
    /// verification page approves the code as the login account.
    ///
    /// # Errors
    /// [`BrowseError`] when a page cannot be loaded.
    pub async fn browse(&self, url: &str) -> Result<Page, BrowseError> {
        let mut current = url.to_owned();
        for _ in 0..MAX_REDIRECTS {
            match self.load(&current).await? {
                Loaded::Redirect(next) => current = next,
                Loaded::Page(page) => return Ok(page),
            }
        }
        Err(BrowseError::TooManyRedirects)
    }

    async fn load(&self, url: &str) -> Result<Loaded, BrowseError> {
        // The error text of reqwest names the URL, which may carry a code: keep only its kind.
        let response = self.http.get(url).send().await.map_err(|err| {
            BrowseError::Request(if err.is_connect() {
                "connection refused".to_owned()
            } else if err.is_timeout() {
                "timed out".to_owned()
            } else {
                "request failed".to_owned()
            })
        })?;
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or(BrowseError::BadRedirect)?;
            let next = response
                .url()
                .join(location)
                .map_err(|_| BrowseError::BadRedirect)?;
            return Ok(Loaded::Redirect(next.to_string()));
        }
        let status = response.status().as_u16();
        let url = Secret::new(response.url().to_string());
        let body = response
            .text()
            .await
            .map_err(|_| BrowseError::Request("the body could not be read".to_owned()))?;
        Ok(Loaded::Page(Page { url, status, body }))
    }
}

enum Loaded {
    Redirect(String),
    Page(Page),
}

/// The unescaped text of the element with `id` (the simulator's pages put no markup inside).
fn element_text(html: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\">");
    let start = html.find(&marker)? + marker.len();
    let end = start + html[start..].find('<')?;
    Some(html_escape::decode_html_entities(&html[start..end]).into_owned())
}
