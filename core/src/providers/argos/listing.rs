//! Backfill: `GET /v3/submission` over a date range, a page at a time (`nextpageKey`). Only
//! the ids of each item are deserialized: names, documents and e-mail never are.

use super::Argos;
use crate::providers::{
    join_url, json_error, query, AnswerError, ListPage, ListWalk, StatusRequest,
};
use crate::subject::{RefKind, SubjectRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Deserialize)]
struct WireList {
    #[serde(rename = "Items")]
    items: Option<Vec<WireItem>>,
    #[serde(rename = "nextpageKey")]
    next_page: Option<Cursor>,
}

#[derive(Deserialize)]
struct WireItem {
    userid: Option<Value>,
    submission_id: Option<Value>,
}

/// ARGOS's continuation, kept as the backfill's cursor (JSON) and sent back as
/// `nextpage_id` / `nextpage_date`.
#[derive(Serialize, Deserialize)]
struct Cursor {
    id: Option<Value>,
    created_at: Option<Value>,
}

fn text(value: &Option<Value>) -> Option<String> {
    match value.as_ref()? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn request(argos: &Argos, walk: &ListWalk<'_>) -> Result<StatusRequest, String> {
    let mut pairs: Vec<(&str, String)> = vec![("request_type", "kyc".into())];
    if let Some(since) = walk.since {
        pairs.push(("start_date", since.to_owned()));
    }
    pairs.push(("end_date", walk.until.to_owned()));
    if let Some(cursor) = walk.cursor {
        let cursor: Cursor = serde_json::from_str(cursor)
            .map_err(|_| "the stored cursor is not an ARGOS nextpageKey".to_owned())?;
        if let Some(id) = text(&cursor.id) {
            pairs.push(("nextpage_id", id));
        }
        if let Some(date) = text(&cursor.created_at) {
            pairs.push(("nextpage_date", date));
        }
    }
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(StatusRequest {
        url: join_url(
            &argos.api_base,
            &format!("/v3/submission?{}", query(&pairs)),
        ),
        headers: vec![(super::API_KEY_HEADER, argos.api_key.expose().to_owned())],
    })
}

pub(super) fn read(body: &[u8]) -> Result<ListPage, AnswerError> {
    let page: WireList =
        serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(json_error(&e)))?;
    let items = page
        .items
        .ok_or_else(|| AnswerError::Malformed("Items is missing".into()))?;
    let mut subjects = Vec::with_capacity(items.len());
    let mut skipped = 0;
    for item in &items {
        let user = text(&item.userid).and_then(|id| SubjectRef::parse(&id).ok());
        let submission = text(&item.submission_id).and_then(|id| SubjectRef::parse(&id).ok());
        match (user, submission) {
            (Some(user), _) => subjects.push((user, RefKind::User)),
            // `request_type=kyc` may leave `userid` out: the submission stands for the subject.
            (None, Some(submission)) => subjects.push((submission, RefKind::Submission)),
            (None, None) => skipped += 1,
        }
    }
    // An empty page ends the walk whatever its key says (as in a check's listing): a key that
    // leads only to empty pages would otherwise loop for ever.
    let next = match page.next_page {
        Some(cursor)
            if !items.is_empty()
                && (text(&cursor.id).is_some() || text(&cursor.created_at).is_some()) =>
        {
            Some(
                serde_json::to_string(&cursor)
                    .map_err(|e| AnswerError::Malformed(e.to_string()))?,
            )
        }
        _ => None,
    };
    Ok(ListPage {
        subjects,
        skipped,
        next,
    })
}
