//! The router and the query-string parser (`api::route`, `api::query_pairs`). Input: the
//! method, a newline, then the path (no newline: the whole input is a GET path); the whole
//! input is also read as a URL.
#![no_main]

use kyc_core::api::{query_pairs, route, Route, RouteError, DASHBOARD_FILES, MAX_PATH};
use kyc_core::subject::Provider;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

fn params<'a>(route: &Route<'a>) -> Vec<&'a str> {
    match *route {
        Route::ArgosWebhook { token } => vec![token],
        Route::GetSubject {
            provider,
            subject_ref,
        }
        | Route::PutSubject {
            provider,
            subject_ref,
        }
        | Route::SubjectEvents {
            provider,
            subject_ref,
        }
        | Route::RefreshSubject {
            provider,
            subject_ref,
        } => vec![provider, subject_ref],
        Route::RedeliverNotification { id } => vec![id],
        Route::Dashboard { file } => vec![file],
        _ => vec![],
    }
}

fn check_route(method: &str, path: &str) {
    match route(method, path) {
        Ok(found) => {
            assert!(path.len() <= MAX_PATH);
            assert!(
                matches!(method, "GET" | "POST" | "PUT"),
                "{method:?} routed"
            );
            let within = path.as_ptr() as usize..=path.as_ptr() as usize + path.len();
            for param in params(&found) {
                assert!(!param.is_empty(), "an empty parameter in {path:?}");
                assert!(!param.contains('/'), "{param:?} from {path:?} holds a '/'");
                if param != "index.html" {
                    assert!(within.contains(&(param.as_ptr() as usize)));
                }
            }
            match found {
                Route::GetSubject { provider, .. }
                | Route::PutSubject { provider, .. }
                | Route::SubjectEvents { provider, .. }
                | Route::RefreshSubject { provider, .. } => {
                    assert!(Provider::parse(provider).is_some())
                }
                Route::Dashboard { file } => assert!(DASHBOARD_FILES.contains(&file)),
                _ => {}
            }
            // The same path with a method no route takes is a 405 that allows this one.
            match route("DELETE", path) {
                Err(RouteError::MethodNotAllowed { allow }) => {
                    assert!(
                        allow.split(", ").any(|m| m == method),
                        "{allow} lacks {method}"
                    )
                }
                other => panic!("DELETE {path:?}: {other:?}"),
            }
        }
        Err(RouteError::MethodNotAllowed { allow }) => {
            for allowed in allow.split(", ") {
                assert_ne!(allowed, method);
                assert!(
                    route(allowed, path).is_ok(),
                    "{allowed} {path:?} is allowed"
                );
            }
        }
        Err(RouteError::NotFound) => {
            for method in ["GET", "POST", "PUT", "DELETE"] {
                assert_eq!(route(method, path), Err(RouteError::NotFound));
            }
        }
    }
}

fn check_query(url: &str) {
    let pairs = query_pairs(url);
    if !url.contains('?') {
        assert!(pairs.is_empty());
    }
    assert!(pairs.len() <= url.matches('&').count() + 1);
    // The decoded pairs, encoded again as a form, read back the same.
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(key, value)| {
            format!(
                "{}={}",
                utf8_percent_encode(key, NON_ALPHANUMERIC),
                utf8_percent_encode(value, NON_ALPHANUMERIC)
            )
        })
        .collect();
    assert_eq!(
        query_pairs(&format!("/p?{}#f", encoded.join("&"))),
        pairs,
        "{url:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (method, path) = text.split_once('\n').unwrap_or(("GET", text));
    check_route(method, path);
    check_query(path);
    check_query(text);
});
