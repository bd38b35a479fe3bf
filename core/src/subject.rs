//! Who a status is about: parse-only identifiers.

use crate::providers::{Registration, REGISTRY};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A KYC provider kyc-edge speaks to: an entry of the registry
/// ([`crate::providers::REGISTRY`]). Only the registry makes them, so every `Provider` names a
/// registered module; the rest of the code iterates over [`Provider::all`] instead of naming
/// providers.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Provider(u8);

impl Provider {
    /// Every registered provider, in registry order.
    pub fn all() -> impl Iterator<Item = Provider> {
        (0..REGISTRY.len()).filter_map(|i| u8::try_from(i).ok().map(Provider))
    }

    pub fn as_str(self) -> &'static str {
        self.registration().name
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::all().find(|p| p.as_str() == value)
    }

    /// What the registry says about this provider.
    pub fn registration(self) -> &'static Registration {
        // Only `all` makes providers, from the registry's own indexes.
        &REGISTRY[self.index()]
    }

    /// Its place in the registry.
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

#[cfg(test)]
impl Provider {
    /// Test shorthand: the registered provider of this name.
    pub(crate) fn named(name: &str) -> Self {
        Self::parse(name).expect("a registered provider")
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Provider {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Provider {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        // Not quoted: the value may be anything a caller sent.
        Provider::parse(&name).ok_or_else(|| serde::de::Error::custom("not a known provider"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    Empty,
    TooLong {
        max: usize,
    },
    BadCharacter,
    /// `.`, `..` or only dots: a path segment a URL resolves away (`/customers/..` is
    /// `/`), so it could name another resource of the provider's API.
    OnlyDots,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty => f.write_str("must not be empty"),
            IdError::TooLong { max } => write!(f, "must be at most {max} bytes"),
            IdError::BadCharacter => {
                f.write_str("may contain only letters, digits and - _ . : @ + ~")
            }
            IdError::OnlyDots => f.write_str("must not be only dots"),
        }
    }
}

/// The provider's id for a subject (Align customer id, ARGOS user id or submission id).
/// Only URL-path-safe characters, so it round-trips through `/v1/subjects/{provider}/{ref}`
/// and KV keys unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectRef(String);

impl SubjectRef {
    pub const MAX_LEN: usize = 128;

    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.is_empty() {
            return Err(IdError::Empty);
        }
        if value.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { max: Self::MAX_LEN });
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:@+~".contains(c);
        if !value.chars().all(allowed) {
            return Err(IdError::BadCharacter);
        }
        if value.bytes().all(|b| b == b'.') {
            return Err(IdError::OnlyDots);
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a ref looks like an e-mail address (`local@domain.tld`): an integrator passed PII
/// where an opaque id belongs.
pub fn looks_like_email(value: &str) -> bool {
    value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.contains('@')
            && domain
                .split_once('.')
                .is_some_and(|(name, tld)| !name.is_empty() && !tld.is_empty())
    })
}

/// A ref as logs may show it: as it is, unless it looks like an e-mail address, which is
/// replaced by `email#` and the first 16 hex digits of its SHA-256 (an operator holding the
/// address can compute the same to find its lines; a reader of the logs cannot reverse it).
pub fn ref_for_log(value: &str) -> std::borrow::Cow<'_, str> {
    use sha2::{Digest, Sha256};
    if looks_like_email(value) {
        let digest = hex::encode(Sha256::digest(value.as_bytes()));
        std::borrow::Cow::Owned(format!("email#{}", &digest[..16]))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

impl TryFrom<String> for SubjectRef {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SubjectRef> for String {
    fn from(value: SubjectRef) -> Self {
        value.0
    }
}

impl fmt::Display for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the provider knows a subject: ARGOS subjects are keyed by `userid` when the
/// application set one, else by the submission id, and each is fetched differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefKind {
    User,
    Submission,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::User => "user",
            RefKind::Submission => "submission",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "user" => Some(RefKind::User),
            "submission" => Some(RefKind::Submission),
            _ => None,
        }
    }
}

/// The application's own id for a subject, given when it starts tracking one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalId(String);

impl ExternalId {
    pub const MAX_LEN: usize = 256;

    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.trim().is_empty() {
            return Err(IdError::Empty);
        }
        if value.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { max: Self::MAX_LEN });
        }
        if value.chars().any(char::is_control) {
            return Err(IdError::BadCharacter);
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_round_trip() {
        for p in Provider::all() {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Provider>(&json).unwrap(), p);
        }
        assert!(serde_json::from_str::<Provider>("\"nobody\"").is_err());
        assert_eq!(Provider::parse("nobody"), None);
        assert_eq!(Provider::parse("ALIGN"), None);
    }

    #[test]
    fn subject_refs_accept_uuids_and_app_ids() {
        for ok in [
            "123e4567-e89b-12d3-a456-426614174000",
            "user_42",
            "a.b:c@d+e~f",
            ".a",
            "a..",
            "..~",
        ] {
            assert!(SubjectRef::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn subject_refs_reject_what_breaks_paths_or_keys() {
        let cases = [
            ("", IdError::Empty),
            ("a/b", IdError::BadCharacter),
            ("a b", IdError::BadCharacter),
            ("é", IdError::BadCharacter),
            ("../x", IdError::BadCharacter),
            (".", IdError::OnlyDots),
            ("..", IdError::OnlyDots),
            ("....", IdError::OnlyDots),
            ("%2e%2e", IdError::BadCharacter),
        ];
        for (input, want) in cases {
            assert_eq!(SubjectRef::parse(input), Err(want), "{input:?}");
        }
        let long = "a".repeat(SubjectRef::MAX_LEN + 1);
        assert_eq!(
            SubjectRef::parse(&long),
            Err(IdError::TooLong {
                max: SubjectRef::MAX_LEN
            })
        );
    }

    #[test]
    fn percent_encoded_dots_are_refused_once_decoded() {
        for raw in ["%2e", "%2E%2e", ".%2e", "%2e%2e%2e", "..."] {
            let decoded = crate::api::path_param(raw);
            assert_eq!(SubjectRef::parse(&decoded), Err(IdError::OnlyDots), "{raw}");
        }
    }

    #[test]
    fn email_refs_are_masked_in_logs() {
        let masked = ref_for_log("jane.doe+kyc@example.com");
        assert!(masked.starts_with("email#"), "{masked}");
        assert_eq!(masked.len(), "email#".len() + 16);
        assert!(!masked.contains("jane") && !masked.contains("example"));
        assert_eq!(masked, ref_for_log("jane.doe+kyc@example.com"), "stable");
        assert_ne!(masked, ref_for_log("john@example.com"));
        for plain in [
            "cust-1",
            "a.b:c@d+e~f",
            "user@localhost",
            "@example.com",
            "u@.x",
        ] {
            assert_eq!(ref_for_log(plain), plain, "{plain}");
        }
    }

    #[test]
    fn external_ids_reject_blank_and_control_characters() {
        assert!(ExternalId::parse("customer 7").is_ok());
        assert_eq!(ExternalId::parse("  "), Err(IdError::Empty));
        assert_eq!(ExternalId::parse("a\nb"), Err(IdError::BadCharacter));
    }
}
