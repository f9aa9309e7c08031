//! The `oauth2` crate, which the flows use for the standard exchanges, works against the
//! simulator as it would against the real providers.

use llxprt_domain::OAuthProvider;
use llxprt_simulator::{Simulator, SimulatorConfig};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, DeviceAuthorizationUrl,
    PkceCodeChallenge, RedirectUrl, RefreshToken, Scope, StandardDeviceAuthorizationResponse,
    TokenResponse, TokenUrl,
};

use crate::support::*;

fn scopes(list: &str) -> Vec<Scope> {
    list.split(' ').map(|s| Scope::new(s.to_owned())).collect()
}

#[tokio::test]
async fn gemini_signs_in_and_refreshes_with_http_basic() {
    let sim = Simulator::start().await.unwrap();
    let urls = &sim.endpoints().gemini;
    let client = BasicClient::new(ClientId::new(client_id(OAuthProvider::Gemini).to_owned()))
        .set_client_secret(ClientSecret::new(
            SimulatorConfig::REAL_GEMINI_CLIENT_SECRET.to_owned(),
        ))
        .set_auth_uri(AuthUrl::new(urls.authorize_url.clone()).unwrap())
        .set_token_uri(TokenUrl::new(urls.token_url.clone()).unwrap())
        .set_redirect_uri(RedirectUrl::new(GEMINI_REDIRECT.to_owned()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(scopes(GEMINI_SCOPES))
        .add_extra_param("access_type", "offline")
        .add_extra_param("prompt", "consent")
        .set_pkce_challenge(challenge)
        .url();
    let redirect = expect_redirect(sim.consent(url.as_str()).await.unwrap());
    assert!(query_param(&redirect, "state").as_deref() == Some(csrf.secret().as_str()));
    let code = query_param(&redirect, "code").unwrap();

    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .unwrap();
    let refresh = token.refresh_token().unwrap();
    let refreshed = client
        .exchange_refresh_token(refresh)
        .request_async(&http())
        .await
        .unwrap();
    assert!(refreshed.refresh_token().is_none());
    assert_eq!(sim.counters(OAuthProvider::Gemini, "user1").refreshes, 1);
}

#[tokio::test]
async fn qwen_device_grant_with_pkce_extras() {
    let sim = Simulator::start_with(SimulatorConfig {
        device_interval_secs: 0,
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let urls = &sim.endpoints().qwen;
    let client = BasicClient::new(ClientId::new(client_id(OAuthProvider::Qwen).to_owned()))
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(urls.device_authorization_url.clone()).unwrap(),
        )
        .set_token_uri(TokenUrl::new(urls.token_url.clone()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scopes(scopes(QWEN_SCOPES))
        .add_extra_param("code_challenge", challenge.as_str())
        .add_extra_param("code_challenge_method", "S256")
        .request_async(&http())
        .await
        .unwrap();
    let complete = details.verification_uri_complete().unwrap();
    sim.browse(complete.secret()).await.unwrap();
    let token = client
        .exchange_device_access_token(&details)
        .add_extra_param("code_verifier", verifier.secret())
        .request_async(&http(), tokio::time::sleep, None)
        .await
        .unwrap();
    assert!(token.refresh_token().is_some());
    assert_eq!(
        sim.counters(OAuthProvider::Qwen, "user1").token_exchanges,
        1
    );
}

#[tokio::test]
async fn codex_public_client_exchanges_and_refreshes() {
    let sim = Simulator::start().await.unwrap();
    let issuer = &sim.endpoints().codex.issuer;
    let client = BasicClient::new(ClientId::new(client_id(OAuthProvider::Codex).to_owned()))
        .set_auth_uri(AuthUrl::new(format!("{issuer}/oauth/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(format!("{issuer}/oauth/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(CODEX_REDIRECT.to_owned()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(scopes(CODEX_SCOPES))
        .add_extra_param("id_token_add_organizations", "true")
        .add_extra_param("codex_cli_simplified_flow", "true")
        .add_extra_param("originator", "codex_cli_rs")
        .set_pkce_challenge(challenge)
        .url();
    let redirect = expect_redirect(sim.consent(url.as_str()).await.unwrap());
    let code = query_param(&redirect, "code").unwrap();
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .unwrap();
    let first = token.refresh_token().unwrap().secret().clone();
    client
        .exchange_refresh_token(&RefreshToken::new(first.clone()))
        .request_async(&http())
        .await
        .unwrap();
    let reused = client
        .exchange_refresh_token(&RefreshToken::new(first))
        .request_async(&http())
        .await;
    let Err(oauth2::RequestTokenError::ServerResponse(err)) = reused else {
        panic!("a reused refresh token must be refused with an OAuth error");
    };
    assert_eq!(err.error().as_ref(), "refresh_token_reused");
}
