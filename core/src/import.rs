//! Bulk registration (`POST /v1/subjects/batch`): a request's lines, each read on its own. A
//! malformed line is refused with its reason and never takes its neighbours with it.

use crate::subject::{ExternalId, Provider, RefKind, SubjectRef};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;

/// Most lines one request may carry: one D1 statement registers them all.
pub const MAX_LINES: usize = 1000;

/// A subject to start tracking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubject {
    pub provider: Provider,
    pub subject_ref: SubjectRef,
    pub ref_kind: RefKind,
    pub external_id: Option<ExternalId>,
}

/// What became of one line, before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Valid(NewSubject),
    /// The same subject as an earlier line (1-based) of the request: it counts once.
    Repeat(usize),
    Invalid(String),
}

/// Why a whole request is refused (each line's own problems are [`Line::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    Empty,
    TooMany {
        lines: usize,
    },
    /// A body starting with `[` that is not a JSON array.
    NotAnArray(String),
    /// A line (1-based) names a provider whose secrets are not set.
    ProviderNotConfigured {
        provider: Provider,
        line: usize,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Empty => f.write_str("no subjects: send a JSON array or NDJSON lines"),
            BatchError::TooMany { lines } => {
                write!(f, "{lines} subjects: at most {MAX_LINES} per request")
            }
            BatchError::NotAnArray(why) => write!(f, "not a JSON array: {why}"),
            BatchError::ProviderNotConfigured { provider, line } => {
                write!(f, "line {line}: {provider} is not configured")
            }
        }
    }
}

/// One line's fields as sent, before they are validated.
struct WireLine {
    provider: String,
    subject_ref: String,
    external_id: Option<String>,
    ref_kind: Option<String>,
}

/// The fields a line may carry.
const FIELDS: [&str; 4] = ["provider", "ref", "external_id", "ref_kind"];

const NOT_STRINGS: &str = "provider, ref, external_id and ref_kind must be strings";

/// Reads a request body: a JSON array of `{provider, ref, external_id?, ref_kind?}`, or the
/// same objects one per line (NDJSON; blank lines are skipped, yet keep their numbers).
/// `enabled` says whether kyc-edge serves a provider. Lines are numbered from 1.
pub fn parse_batch(
    body: &[u8],
    enabled: &dyn Fn(Provider) -> bool,
) -> Result<Vec<(usize, Line)>, BatchError> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    let items: Vec<(usize, Result<WireLine, String>)> = if trimmed.starts_with('[') {
        let values: Vec<Value> = serde_json::from_str(trimmed).map_err(|e| {
            BatchError::NotAnArray(format!("line {}, column {}", e.line(), e.column()))
        })?;
        values
            .into_iter()
            .enumerate()
            .map(|(i, value)| (i + 1, read_line(value)))
            .collect()
    } else {
        text.split('\n')
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                let value =
                    serde_json::from_str(line.trim()).map_err(|_| "not a JSON object".to_owned());
                (i + 1, value.and_then(read_line))
            })
            .collect()
    };
    if items.is_empty() {
        return Err(BatchError::Empty);
    }
    if items.len() > MAX_LINES {
        return Err(BatchError::TooMany { lines: items.len() });
    }
    // A provider kyc-edge does not serve refuses the whole request: its lines could never be
    // checked, and the answer names the secrets that would enable it.
    let unserved = items.iter().find_map(|(number, item)| {
        let provider = Provider::parse(&item.as_ref().ok()?.provider)?;
        (!enabled(provider)).then_some((provider, *number))
    });
    if let Some((provider, line)) = unserved {
        return Err(BatchError::ProviderNotConfigured { provider, line });
    }
    let mut first_seen: Vec<((Provider, String), usize)> = Vec::new();
    let mut seen = HashSet::new();
    Ok(items
        .into_iter()
        .map(|(number, item)| {
            let line = match item.and_then(validate) {
                Err(why) => Line::Invalid(why),
                Ok(subject) => {
                    let key = (subject.provider, subject.subject_ref.as_str().to_owned());
                    if seen.insert(key.clone()) {
                        first_seen.push((key, number));
                        Line::Valid(subject)
                    } else {
                        let first = first_seen
                            .iter()
                            .find(|(k, _)| *k == key)
                            .map_or(number, |(_, n)| *n);
                        Line::Repeat(first)
                    }
                }
            };
            (number, line)
        })
        .collect())
}

/// A line's fields, read from the parsed value rather than from a deserializer's message:
/// the reason names a field (when it looks like one) and never quotes a value (a ref or an
/// external id may be personal data an application put there by mistake). Fields are looked
/// at in name order: an unknown or mistyped one is reported before a missing one.
fn read_line(value: Value) -> Result<WireLine, String> {
    let Value::Object(fields) = value else {
        return Err(NOT_STRINGS.to_owned());
    };
    let mut keys: Vec<&String> = fields.keys().collect();
    keys.sort();
    for key in keys {
        if !FIELDS.contains(&key.as_str()) {
            return Err(unknown_field(key));
        }
        let required = matches!(key.as_str(), "provider" | "ref");
        match &fields[key] {
            Value::String(_) => {}
            Value::Null if !required => {}
            _ => return Err(NOT_STRINGS.to_owned()),
        }
    }
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok(WireLine {
        provider: text("provider").ok_or("missing field `provider`")?,
        subject_ref: text("ref").ok_or("missing field `ref`")?,
        external_id: text("external_id"),
        ref_kind: text("ref_kind"),
    })
}

/// A field name is input too: named only when it looks like one (a typo worth seeing).
fn unknown_field(name: &str) -> String {
    let looks_like_a_name = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if looks_like_a_name {
        format!("unknown field `{name}`")
    } else {
        "an unknown field (allowed: provider, ref, external_id, ref_kind)".to_owned()
    }
}

fn validate(wire: WireLine) -> Result<NewSubject, String> {
    let provider = Provider::parse(&wire.provider).ok_or_else(|| {
        let names: Vec<&str> = Provider::all().map(Provider::as_str).collect();
        format!("provider must be one of {}", names.join(", "))
    })?;
    let subject_ref = SubjectRef::parse(&wire.subject_ref).map_err(|e| format!("ref {e}"))?;
    let kinds = provider.registration().ref_kinds;
    let ref_kind = match wire.ref_kind.as_deref() {
        None => RefKind::User,
        Some(kind) => RefKind::parse(kind)
            .filter(|kind| kinds.contains(kind))
            .ok_or_else(|| {
                let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                format!("ref_kind must be {} for {provider}", names.join(" or "))
            })?,
    };
    let external_id = wire
        .external_id
        .as_deref()
        .map(ExternalId::parse)
        .transpose()
        .map_err(|e| format!("external_id {e}"))?;
    Ok(NewSubject {
        provider,
        subject_ref,
        ref_kind,
        external_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: Provider) -> bool {
        true
    }

    fn lines(body: &str) -> Vec<(usize, Line)> {
        parse_batch(body.as_bytes(), &all).unwrap()
    }

    fn valid(provider: Provider, subject_ref: &str, external_id: Option<&str>) -> Line {
        Line::Valid(NewSubject {
            provider,
            subject_ref: SubjectRef::parse(subject_ref).unwrap(),
            ref_kind: RefKind::User,
            external_id: external_id.map(|e| ExternalId::parse(e).unwrap()),
        })
    }

    #[test]
    fn a_json_array_and_ndjson_say_the_same() {
        let array = r#"[{"provider":"align","ref":"c-1","external_id":"u-1"},
                        {"provider":"argos","ref":"user_2"}]"#;
        let ndjson = "{\"provider\":\"align\",\"ref\":\"c-1\",\"external_id\":\"u-1\"}\n\
                      {\"provider\":\"argos\",\"ref\":\"user_2\"}\n";
        let expected = vec![
            (1, valid(Provider::named("align"), "c-1", Some("u-1"))),
            (2, valid(Provider::named("argos"), "user_2", None)),
        ];
        assert_eq!(lines(array), expected);
        assert_eq!(lines(ndjson), expected);
    }

    #[test]
    fn a_bad_line_is_refused_alone_with_its_reason() {
        let body = "{\"provider\":\"align\",\"ref\":\"ok-1\"}\n\
                    not json at all\n\
                    \n\
                    {\"provider\":\"paypal\",\"ref\":\"x\"}\n\
                    {\"provider\":\"align\",\"ref\":\"has space\"}\n\
                    {\"provider\":\"align\",\"ref\":\"ok-2\",\"email\":\"ada@example.com\"}\n\
                    {\"provider\":\"align\"}\n\
                    {\"provider\":\"align\",\"ref\":7}\n\
                    {\"provider\":\"align\",\"ref\":\"ok-3\",\"ref_kind\":\"submission\"}\n\
                    {\"provider\":\"align\",\"ref\":\"ok-1\"}\n";
        let got = lines(body);
        let numbers: Vec<usize> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            numbers,
            [1, 2, 4, 5, 6, 7, 8, 9, 10],
            "blank lines keep their number"
        );
        assert_eq!(got[0].1, valid(Provider::named("align"), "ok-1", None));
        let reasons: Vec<String> = got[1..8]
            .iter()
            .map(|(_, line)| match line {
                Line::Invalid(why) => why.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        let providers = format!(
            "provider must be one of {}",
            Provider::all()
                .map(Provider::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(
            reasons,
            [
                "not a JSON object",
                providers.as_str(),
                "ref may contain only letters, digits and - _ . : @ + ~",
                "unknown field `email`",
                "missing field `ref`",
                "provider, ref, external_id and ref_kind must be strings",
                "ref_kind must be user for align",
            ]
        );
        assert!(
            reasons.iter().all(|r| !r.contains("ada@")),
            "a reason never quotes a value"
        );
        assert_eq!(got[8].1, Line::Repeat(1));
    }

    #[test]
    fn a_field_name_that_is_not_a_name_is_not_quoted() {
        // Found by the import_batch fuzz target: the reason quoted "p@rovi…" from the input.
        let got = lines("{\"p@roviefal\",\"ref\":\"x\"}\n{\"provider\":\"align\",\"ref\":\"ok\",\"ada@example.com\":1}\n");
        for (_, line) in got {
            let Line::Invalid(why) = line else {
                panic!("{line:?}")
            };
            assert!(!why.contains('@'), "{why}");
        }
    }

    #[test]
    fn whole_requests_that_are_refused() {
        assert_eq!(parse_batch(b"", &all), Err(BatchError::Empty));
        assert_eq!(parse_batch(b"[]", &all), Err(BatchError::Empty));
        assert_eq!(parse_batch(b" \n\n", &all), Err(BatchError::Empty));
        assert!(matches!(
            parse_batch(b"[{\"provider\":", &all),
            Err(BatchError::NotAnArray(_))
        ));
        let line = "{\"provider\":\"align\",\"ref\":\"c\"}\n";
        assert_eq!(
            parse_batch(line.repeat(MAX_LINES + 1).as_bytes(), &all),
            Err(BatchError::TooMany {
                lines: MAX_LINES + 1
            })
        );
        assert_eq!(
            parse_batch(line.repeat(MAX_LINES).as_bytes(), &all)
                .unwrap()
                .len(),
            MAX_LINES
        );
    }

    #[test]
    fn a_provider_that_is_not_configured_refuses_the_whole_batch_naming_its_line() {
        let only_argos = |p: Provider| p == Provider::named("argos");
        let argos = b"{\"provider\":\"argos\",\"ref\":\"s1\",\"ref_kind\":\"submission\"}";
        let mut body = argos.to_vec();
        body.extend_from_slice(b"\n{\"provider\":\"align\",\"ref\":\"c\"}");
        assert_eq!(
            parse_batch(&body, &only_argos),
            Err(BatchError::ProviderNotConfigured {
                provider: Provider::named("align"),
                line: 2
            })
        );
        let got = parse_batch(argos, &only_argos).unwrap();
        assert!(
            matches!(&got[0].1, Line::Valid(s) if s.ref_kind == RefKind::Submission),
            "{got:?}"
        );
    }
}
