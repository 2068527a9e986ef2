//! The streaming credential: the JWT the auth service hands out, and the channels it opens.

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

pub(crate) use crate::remote::api::encode_path_segment as percent_encode;

/// What `GET {auth_url}/v2/auth?s=1.3` answers.
#[derive(Debug, Deserialize)]
pub(crate) struct AuthResponse {
    /// False: this environment does not stream (polling only).
    #[serde(rename = "pushEnabled", default)]
    pub(crate) push_enabled: bool,
    /// The JWT (empty when streaming is off).
    #[serde(default)]
    pub(crate) token: String,
    /// Seconds to wait before opening the stream, when the service asks for it.
    #[serde(rename = "connDelay", default)]
    pub(crate) conn_delay: Option<u64>,
}

/// A decoded streaming token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    /// The JWT as sent to the streaming service.
    pub(crate) raw: String,
    /// Issued at, seconds since the epoch.
    pub(crate) issued_at: i64,
    /// Expires at, seconds since the epoch.
    pub(crate) expires_at: i64,
    /// Channel names with their capabilities (`subscribe`, `channel-metadata:publishers`),
    /// sorted by name.
    pub(crate) channels: Vec<(String, Vec<String>)>,
}

/// How long before a token expires it is replaced (the official SDKs: 10 minutes).
pub(crate) const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(600);

#[derive(Deserialize)]
struct Claims {
    iat: Option<i64>,
    exp: Option<i64>,
    #[serde(rename = "x-ably-capability")]
    capability: Option<String>,
}

impl Token {
    /// Decodes `raw` (`header.payload.signature`, base64url): the times and the channels of
    /// the `x-ably-capability` claim (a JSON object, as a string, of channel to capabilities).
    /// The signature is the streaming service's to check, not ours.
    pub(crate) fn decode(raw: &str) -> Result<Token, String> {
        let payload = raw
            .split('.')
            .nth(1)
            .ok_or("the token is not a JWT (no payload part)")?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|e| format!("the token's payload is not base64url: {e}"))?;
        let claims: Claims = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the token's payload is not JSON claims: {e}"))?;
        let capability = claims
            .capability
            .ok_or("the token has no x-ably-capability claim")?;
        let map: std::collections::BTreeMap<String, Vec<String>> =
            serde_json::from_str(&capability)
                .map_err(|e| format!("the token's x-ably-capability is not a channel map: {e}"))?;
        let (Some(issued_at), Some(expires_at)) = (claims.iat, claims.exp) else {
            return Err("the token has no iat or exp claim".into());
        };
        Ok(Token {
            raw: raw.to_string(),
            issued_at,
            expires_at,
            channels: map.into_iter().collect(),
        })
    }

    /// How long to use the token before authenticating again: its lifetime, less
    /// [`REFRESH_BEFORE_EXPIRY`] (at least a minute, for short-lived test tokens).
    pub(crate) fn refresh_after(&self) -> Duration {
        let lifetime = u64::try_from(self.expires_at - self.issued_at).unwrap_or(0);
        Duration::from_secs(lifetime)
            .saturating_sub(REFRESH_BEFORE_EXPIRY)
            .max(Duration::from_secs(60).min(Duration::from_secs(lifetime)))
    }

    /// The `channels` parameter of the stream URL: every channel, comma-separated and
    /// percent-encoded, those with publisher metadata (the control channels) prefixed with
    /// `[?occupancy=metrics.publishers]`.
    pub(crate) fn channels_param(&self) -> String {
        self.channels
            .iter()
            .map(|(name, caps)| {
                let prefix = if caps.iter().any(|c| c == "channel-metadata:publishers")
                    || name.starts_with("control_")
                {
                    "[?occupancy=metrics.publishers]"
                } else {
                    ""
                };
                percent_encode(&format!("{prefix}{name}"))
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A JWT (unsigned) with these claims, as the tests' auth service hands out.
    pub(crate) fn jwt(iat: i64, exp: i64, channels: &[(&str, &[&str])]) -> String {
        let cap: std::collections::BTreeMap<&str, Vec<&str>> = channels
            .iter()
            .map(|(c, caps)| (*c, caps.to_vec()))
            .collect();
        let claims = serde_json::json!({
            "iat": iat, "exp": exp,
            "x-ably-capability": serde_json::to_string(&cap).unwrap_or_default(),
            "x-ably-clientId": "clientId",
        });
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(claims.to_string().as_bytes()),
            b64(b"signature")
        )
    }

    #[test]
    fn a_token_gives_its_times_and_channels() {
        let raw = jwt(
            1_000,
            1_000 + 3600,
            &[
                ("xxx_splits", &["subscribe"]),
                ("control_pri", &["subscribe", "channel-metadata:publishers"]),
                ("control_sec", &["subscribe", "channel-metadata:publishers"]),
                ("xxx_segments", &["subscribe"]),
            ],
        );
        let t = Token::decode(&raw).unwrap();
        assert_eq!((t.issued_at, t.expires_at), (1_000, 4_600));
        assert_eq!(t.refresh_after(), Duration::from_secs(3000));
        assert_eq!(
            t.channels_param(),
            "%5B%3Foccupancy%3Dmetrics.publishers%5Dcontrol_pri,%5B%3Foccupancy%3Dmetrics.publishers%5Dcontrol_sec,xxx_segments,xxx_splits"
        );
    }

    #[test]
    fn broken_tokens_say_what_is_wrong() {
        assert!(Token::decode("nodots").unwrap_err().contains("not a JWT"));
        assert!(Token::decode("a.!!!.c").unwrap_err().contains("base64url"));
        let no_cap = format!(
            "a.{}.c",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"iat":1,"exp":2}"#)
        );
        assert!(
            Token::decode(&no_cap)
                .unwrap_err()
                .contains("x-ably-capability")
        );
    }
}
