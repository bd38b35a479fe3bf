//! Secrets that never print.

use std::fmt;
use subtle::ConstantTimeEq;

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

    /// Constant-time comparison with a presented value.
    pub fn matches(&self, presented: &str) -> bool {
        // Length is not secret; `ct_eq` on unequal lengths returns false without early exit
        // on content.
        bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
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
}
