//! Secrets that never print, and bearer tokens: lists of secrets of a minimum length.

use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// The shortest bearer token accepted (`API_TOKEN`, `API_READ_TOKEN`, `ARGOS_WEBHOOK_TOKEN`):
/// 32 characters, e.g. 16 random bytes in hex, out of reach of guessing over HTTP.
pub const MIN_TOKEN_LEN: usize = 32;

/// Why a token variable is unusable. Never quotes the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// A token of the list is shorter than [`MIN_TOKEN_LEN`]; `position` counts from 1.
    TooShort { position: usize },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::TooShort { position } => write!(
                f,
                "token {position} of the list is shorter than {MIN_TOKEN_LEN} characters \
                 (generate one with `openssl rand -hex 16`)"
            ),
        }
    }
}

/// A comma-separated list of tokens (several for rotation without downtime): each trimmed,
/// blank entries skipped (a trailing comma), every one at least [`MIN_TOKEN_LEN`] long.
pub fn token_list(value: &str) -> Result<Vec<Secret>, TokenError> {
    value
        .split(',')
        .filter_map(Secret::new)
        .enumerate()
        .map(|(i, token)| {
            if token.0.chars().count() < MIN_TOKEN_LEN {
                Err(TokenError::TooShort { position: i + 1 })
            } else {
                Ok(token)
            }
        })
        .collect()
}

/// Whether `presented` is one of `tokens`: every token is compared (no early exit), each in
/// constant time.
pub fn any_matches(tokens: &[Secret], presented: &str) -> bool {
    tokens
        .iter()
        .fold(false, |found, token| found | token.matches(presented))
}

/// A secret string (API key, webhook token). `Debug` prints `[REDACTED]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// `None` for an empty or blank value: a provider with an empty key is disabled, not
    /// configured with an empty key (an empty HMAC key would accept forged signatures).
    pub fn new(value: &str) -> Option<Self> {
        let trimmed = value.trim();
        (!trimmed.is_empty()).then(|| Self(trimmed.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented value. Both are hashed first, so the time
    /// depends on neither the content nor the length of the secret.
    pub fn matches(&self, presented: &str) -> bool {
        let secret = Sha256::digest(self.0.as_bytes());
        let presented = Sha256::digest(presented.as_bytes());
        bool::from(secret.as_slice().ct_eq(presented.as_slice()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2").unwrap();
        assert_eq!(format!("{s:?}"), "[REDACTED]");
    }

    #[test]
    fn blank_secrets_are_absent() {
        assert!(Secret::new("").is_none());
        assert!(Secret::new("  \n").is_none());
    }

    #[test]
    fn matches_only_the_exact_value() {
        let s = Secret::new("token-123").unwrap();
        assert!(s.matches("token-123"));
        assert!(!s.matches("token-12"));
        assert!(!s.matches("token-1234"));
        assert!(!s.matches(""));
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn token_lists_hold_several_tokens_for_rotation() {
        let tokens = token_list(&format!(" {A} ,{B},")).unwrap();
        assert_eq!(tokens.len(), 2);
        assert!(any_matches(&tokens, A));
        assert!(any_matches(&tokens, B));
        assert!(!any_matches(&tokens, &A[1..]));
        assert!(!any_matches(&tokens, ""));
        assert!(!any_matches(&[], A));
        assert!(token_list("").unwrap().is_empty());
    }

    #[test]
    fn tokens_shorter_than_32_characters_are_refused_without_quoting_them() {
        let short = "s3cr3t-but-only-31-characters-x";
        assert_eq!(short.len(), 31);
        assert_eq!(
            token_list(short).unwrap_err(),
            TokenError::TooShort { position: 1 }
        );
        let err = token_list(&format!("{A},{short}")).unwrap_err();
        assert_eq!(err, TokenError::TooShort { position: 2 });
        assert!(!err.to_string().contains(short), "{err}");
        assert!(token_list(&format!("{short}x")).is_ok(), "32 is enough");
    }
}
