//! The HTTP surface, as pure functions: which route a method and path name, and the error
//! codes an answer may carry. The adapter only dispatches.

use crate::subject::{IdError, Provider, SubjectRef};
use percent_encoding::percent_decode_str;
use std::borrow::Cow;
use std::fmt;

/// Every error the API answers with. The status code comes from the code, so a handler
/// cannot invent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// The request conflicts with work in progress (a backfill already running).
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// The provider is registered but its secrets are not set: the answer names them.
    ProviderNotConfigured,
    /// The deployment is misconfigured; the log says how, the answer does not.
    ConfigurationError,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            // A webhook route answers 404 instead (the route does not exist while disabled).
            ErrorCode::Conflict | ErrorCode::ProviderNotConfigured => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::ConfigurationError | ErrorCode::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::ProviderNotConfigured => "provider_not_configured",
            ErrorCode::ConfigurationError => "configuration_error",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A route and the path parameters it carries (raw: handlers parse them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET /`: a small index, or the dashboard for a browser.
    Index,
    Health,
    /// `POST /webhooks/{provider}`, or `/webhooks/{provider}/{token}` for a provider whose
    /// webhooks carry a secret path segment.
    Webhook {
        provider: Provider,
        token: Option<&'a str>,
    },
    ListSubjects,
    GetSubject {
        subject: SubjectPath,
    },
    PutSubject {
        subject: SubjectPath,
    },
    SubjectEvents {
        subject: SubjectPath,
    },
    RefreshSubject {
        subject: SubjectPath,
    },
    Stats,
    ListNotifications,
    RedeliverNotification {
        id: &'a str,
    },
    EnableNotifications,
    StuckSubjects,
    /// Bulk registration: up to [`crate::import::MAX_LINES`] subjects.
    ImportSubjects,
    StartBackfill {
        provider: Provider,
    },
    GetBackfill {
        provider: Provider,
    },
    CronRuns,
    /// `GET /v1/alerts`: open and recent alerts.
    Alerts,
    OpenApi,
    /// A dashboard file: `index.html`, `app.js`, `app.css`.
    Dashboard {
        file: &'a str,
    },
}

impl Route<'_> {
    /// A short name for logs (no parameters: refs and tokens stay out of route names).
    pub fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Route::Index => "index",
            Route::Health => "health",
            Route::Webhook { provider, .. } => {
                return Cow::Owned(format!("webhook.{provider}"));
            }
            Route::ListSubjects => "subjects.list",
            Route::GetSubject { .. } => "subjects.get",
            Route::PutSubject { .. } => "subjects.put",
            Route::SubjectEvents { .. } => "subjects.events",
            Route::RefreshSubject { .. } => "subjects.refresh",
            Route::Stats => "stats",
            Route::ListNotifications => "notifications.list",
            Route::RedeliverNotification { .. } => "notifications.redeliver",
            Route::EnableNotifications => "notifications.enable",
            Route::StuckSubjects => "subjects.stuck",
            Route::ImportSubjects => "subjects.batch",
            Route::StartBackfill { .. } => "backfill.start",
            Route::GetBackfill { .. } => "backfill.get",
            Route::CronRuns => "runs",
            Route::Alerts => "alerts",
            Route::OpenApi => "openapi",
            Route::Dashboard { .. } => "dashboard",
        })
    }

    /// Whether the route is the application API (bearer token required).
    pub fn needs_token(&self) -> bool {
        self.access() != Access::Public
    }

    /// Which token the route takes. Reads are `GET`s; anything that writes, calls a
    /// provider or sends a notification is the admin token's.
    pub fn access(&self) -> Access {
        match self {
            Route::Index
            | Route::Health
            | Route::Webhook { .. }
            | Route::OpenApi
            | Route::Dashboard { .. } => Access::Public,
            Route::ListSubjects
            | Route::GetSubject { .. }
            | Route::SubjectEvents { .. }
            | Route::Stats
            | Route::ListNotifications
            | Route::StuckSubjects
            | Route::GetBackfill { .. }
            | Route::CronRuns
            | Route::Alerts => Access::Read,
            Route::PutSubject { .. }
            | Route::RefreshSubject { .. }
            | Route::RedeliverNotification { .. }
            | Route::EnableNotifications
            | Route::ImportSubjects
            | Route::StartBackfill { .. } => Access::Admin,
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token (health, webhooks: they authenticate themselves, static files).
    Public,
    /// `API_READ_TOKEN` or `API_TOKEN`.
    Read,
    /// `API_TOKEN` only.
    Admin,
}

/// The kind of token a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reader,
    Admin,
}

/// Why a request may not call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// 401: no token, or not one of ours.
    Unauthenticated,
    /// 403: a read-only token on a route that writes.
    ReadOnly,
}

/// Whether a presented role may call a route of `access`.
pub fn authorize(access: Access, role: Option<Role>) -> Result<(), Denied> {
    match (access, role) {
        (Access::Public, _) | (Access::Read, Some(_)) | (Access::Admin, Some(Role::Admin)) => {
            Ok(())
        }
        (_, None) => Err(Denied::Unauthenticated),
        (Access::Admin, Some(Role::Reader)) => Err(Denied::ReadOnly),
    }
}

/// Headers every `/v1` answer carries: nothing caches a KYC answer, nothing sniffs its type.
pub const API_HEADERS: [(&str, &str); 2] = [
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
];

/// Why no route answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// The path exists; `allow` lists its methods (for the `Allow` header).
    MethodNotAllowed {
        allow: &'static str,
    },
}

/// The dashboard's files (dashboard/): nothing else under /dashboard is served.
pub const DASHBOARD_FILES: [&str; 3] = ["index.html", "app.js", "app.css"];

/// Longest path the router looks at; anything longer is not a route of ours.
pub const MAX_PATH: usize = 2048;

/// Which route `method` and `path` name.
pub fn route<'a>(method: &str, path: &'a str) -> Result<Route<'a>, RouteError> {
    if path.len() > MAX_PATH {
        return Err(RouteError::NotFound);
    }
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let (allow, route): (&'static str, Option<Route<'a>>) = match segments.as_slice() {
        [""] => ("GET", (method == "GET").then_some(Route::Index)),
        ["healthz"] => ("GET", (method == "GET").then_some(Route::Health)),
        ["webhooks", name, rest @ ..] => {
            let provider = Provider::parse(name).ok_or(RouteError::NotFound)?;
            let token = match (provider.registration().webhook_token_in_path, rest) {
                (false, []) => None,
                (true, [token]) if !token.is_empty() => Some(*token),
                _ => return Err(RouteError::NotFound),
            };
            (
                "POST",
                (method == "POST").then_some(Route::Webhook { provider, token }),
            )
        }
        ["v1", "subjects"] => ("GET", (method == "GET").then_some(Route::ListSubjects)),
        ["v1", "subjects", "stuck"] => ("GET", (method == "GET").then_some(Route::StuckSubjects)),
        ["v1", "subjects", "batch"] => {
            ("POST", (method == "POST").then_some(Route::ImportSubjects))
        }
        ["v1", "backfill", name] => {
            let provider = Provider::parse(name).ok_or(RouteError::NotFound)?;
            (
                "GET, POST",
                match method {
                    "GET" => Some(Route::GetBackfill { provider }),
                    "POST" => Some(Route::StartBackfill { provider }),
                    _ => None,
                },
            )
        }
        ["v1", "runs"] => ("GET", (method == "GET").then_some(Route::CronRuns)),
        ["v1", "alerts"] => ("GET", (method == "GET").then_some(Route::Alerts)),
        ["openapi.json"] => ("GET", (method == "GET").then_some(Route::OpenApi)),
        ["dashboard"] | ["dashboard", ""] => (
            "GET",
            (method == "GET").then_some(Route::Dashboard { file: "index.html" }),
        ),
        ["dashboard", file] if DASHBOARD_FILES.contains(file) => (
            "GET",
            (method == "GET").then_some(Route::Dashboard { file }),
        ),
        ["v1", "subjects", provider, subject_ref] => {
            let subject = SubjectPath::parse(provider, subject_ref)?;
            (
                "GET, PUT",
                match method {
                    "GET" => Some(Route::GetSubject { subject }),
                    "PUT" => Some(Route::PutSubject { subject }),
                    _ => None,
                },
            )
        }
        ["v1", "subjects", provider, subject_ref, "events"] => {
            let subject = SubjectPath::parse(provider, subject_ref)?;
            (
                "GET",
                (method == "GET").then_some(Route::SubjectEvents { subject }),
            )
        }
        ["v1", "subjects", provider, subject_ref, "refresh"] => {
            let subject = SubjectPath::parse(provider, subject_ref)?;
            (
                "POST",
                (method == "POST").then_some(Route::RefreshSubject { subject }),
            )
        }
        ["v1", "stats"] => ("GET", (method == "GET").then_some(Route::Stats)),
        ["v1", "notifications"] => ("GET", (method == "GET").then_some(Route::ListNotifications)),
        ["v1", "notifications", "enable"] => (
            "POST",
            (method == "POST").then_some(Route::EnableNotifications),
        ),
        ["v1", "notifications", id, "redeliver"] if !id.is_empty() => (
            "POST",
            (method == "POST").then_some(Route::RedeliverNotification { id }),
        ),
        _ => return Err(RouteError::NotFound),
    };
    // HEAD is served as GET by the platform; OPTIONS and the rest are not ours.
    route.ok_or(RouteError::MethodNotAllowed { allow })
}

/// The query of a request URL (`…?a=1&b=x%20y#f`) as decoded pairs, in order, the way HTML
/// forms encode them (`+` is a space). Invalid UTF-8 decodes lossily: a parameter's parser
/// then refuses it.
pub fn query_pairs(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return vec![];
    };
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// A path parameter as its sender meant it: percent-decoded, since clients encode the `:`,
/// `@` and `+` a ref may hold (`encodeURIComponent`, OpenAPI generators). Invalid UTF-8
/// decodes lossily; the parameter's parser judges the result (an encoded `/` or NUL is then
/// a bad character, not a separator).
pub fn path_param(raw: &str) -> Cow<'_, str> {
    percent_decode_str(raw).decode_utf8_lossy()
}

/// A subject named by a path, parsed once by the router: a provider kyc-edge does not know,
/// or an empty ref, is not a route (404). A ref that is not a usable one is still a route:
/// the handler answers it 400, once the caller is authorized, with the reason kept here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPath {
    pub provider: Provider,
    /// The ref, percent-decoded once, then parsed.
    pub subject_ref: Result<SubjectRef, IdError>,
}

impl SubjectPath {
    fn parse(provider: &str, subject_ref: &str) -> Result<Self, RouteError> {
        let provider = Provider::parse(provider).ok_or(RouteError::NotFound)?;
        if subject_ref.is_empty() {
            return Err(RouteError::NotFound);
        }
        Ok(Self {
            provider,
            subject_ref: SubjectRef::parse(&path_param(subject_ref)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(provider: &str, subject_ref: &str) -> SubjectPath {
        SubjectPath {
            provider: Provider::named(provider),
            subject_ref: SubjectRef::parse(subject_ref),
        }
    }

    #[test]
    fn every_route_and_its_methods() {
        let cases = [
            ("GET", "/", Route::Index),
            ("GET", "/healthz", Route::Health),
            (
                "POST",
                "/webhooks/align",
                Route::Webhook {
                    provider: Provider::parse("align").unwrap(),
                    token: None,
                },
            ),
            (
                "POST",
                "/webhooks/argos/t0k",
                Route::Webhook {
                    provider: Provider::parse("argos").unwrap(),
                    token: Some("t0k"),
                },
            ),
            ("GET", "/v1/subjects", Route::ListSubjects),
            (
                "GET",
                "/v1/subjects/align/c-1",
                Route::GetSubject {
                    subject: subject("align", "c-1"),
                },
            ),
            (
                "PUT",
                "/v1/subjects/argos/u1",
                Route::PutSubject {
                    subject: subject("argos", "u1"),
                },
            ),
            (
                "GET",
                "/v1/subjects/align/c-1/events",
                Route::SubjectEvents {
                    subject: subject("align", "c-1"),
                },
            ),
            (
                "POST",
                "/v1/subjects/align/c-1/refresh",
                Route::RefreshSubject {
                    subject: subject("align", "c-1"),
                },
            ),
            ("GET", "/v1/stats", Route::Stats),
            ("GET", "/v1/notifications", Route::ListNotifications),
            ("GET", "/v1/subjects/stuck", Route::StuckSubjects),
            ("POST", "/v1/subjects/batch", Route::ImportSubjects),
            (
                "POST",
                "/v1/backfill/argos",
                Route::StartBackfill {
                    provider: Provider::named("argos"),
                },
            ),
            (
                "GET",
                "/v1/backfill/align",
                Route::GetBackfill {
                    provider: Provider::named("align"),
                },
            ),
            ("GET", "/v1/runs", Route::CronRuns),
            ("GET", "/v1/alerts", Route::Alerts),
            ("GET", "/openapi.json", Route::OpenApi),
            ("GET", "/dashboard", Route::Dashboard { file: "index.html" }),
            (
                "GET",
                "/dashboard/",
                Route::Dashboard { file: "index.html" },
            ),
            (
                "GET",
                "/dashboard/app.js",
                Route::Dashboard { file: "app.js" },
            ),
            (
                "POST",
                "/v1/notifications/enable",
                Route::EnableNotifications,
            ),
            (
                "POST",
                "/v1/notifications/msg_1_abc/redeliver",
                Route::RedeliverNotification { id: "msg_1_abc" },
            ),
        ];
        for (method, path, want) in cases {
            assert_eq!(route(method, path), Ok(want), "{method} {path}");
        }
    }

    #[test]
    fn a_subject_path_is_parsed_once_by_the_router() {
        let Ok(Route::GetSubject { subject }) = route("GET", "/v1/subjects/align/a%3Ab%40c") else {
            panic!("a route")
        };
        assert_eq!(subject.provider, Provider::named("align"));
        assert_eq!(
            subject.subject_ref.map(|r| r.to_string()),
            Ok("a:b@c".into())
        );
        // An unusable ref is the handler's 400 (after authorization), not a 404.
        let Ok(Route::RefreshSubject { subject }) =
            route("POST", "/v1/subjects/align/has%20space/refresh")
        else {
            panic!("a route")
        };
        assert!(subject.subject_ref.is_err());
        assert_eq!(
            route("GET", "/v1/subjects/paypal/c-1"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            route("GET", "/v1/backfill/paypal"),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn reads_are_gets_and_everything_else_needs_the_admin_token() {
        let all = [
            ("GET", "/healthz"),
            ("POST", "/webhooks/align"),
            ("GET", "/openapi.json"),
            ("GET", "/dashboard/app.js"),
            ("GET", "/v1/subjects"),
            ("GET", "/v1/subjects/align/c-1"),
            ("PUT", "/v1/subjects/align/c-1"),
            ("GET", "/v1/subjects/align/c-1/events"),
            ("POST", "/v1/subjects/align/c-1/refresh"),
            ("GET", "/v1/stats"),
            ("GET", "/v1/notifications"),
            ("POST", "/v1/notifications/enable"),
            ("POST", "/v1/notifications/msg_1/redeliver"),
            ("GET", "/v1/subjects/stuck"),
            ("POST", "/v1/subjects/batch"),
            ("GET", "/v1/backfill/align"),
            ("POST", "/v1/backfill/align"),
            ("GET", "/v1/runs"),
        ];
        for (method, path) in all {
            let r = route(method, path).unwrap();
            let want = if !path.starts_with("/v1") {
                Access::Public
            } else if method == "GET" {
                Access::Read
            } else {
                Access::Admin
            };
            assert_eq!(r.access(), want, "{method} {path}");
        }
        use Access::*;
        assert_eq!(authorize(Read, Some(Role::Reader)), Ok(()));
        assert_eq!(authorize(Admin, Some(Role::Reader)), Err(Denied::ReadOnly));
        assert_eq!(authorize(Admin, Some(Role::Admin)), Ok(()));
        assert_eq!(authorize(Read, None), Err(Denied::Unauthenticated));
        assert_eq!(authorize(Public, None), Ok(()));
    }

    #[test]
    fn a_known_path_with_another_method_is_405_with_its_methods() {
        for (method, path, allow) in [
            ("DELETE", "/v1/subjects/align/c-1", "GET, PUT"),
            ("GET", "/webhooks/align", "POST"),
            ("POST", "/healthz", "GET"),
            ("PUT", "/v1/stats", "GET"),
            ("GET", "/v1/subjects/align/c-1/refresh", "POST"),
            ("GET", "/v1/notifications/enable", "POST"),
            ("DELETE", "/v1/notifications", "GET"),
            ("GET", "/v1/subjects/batch", "POST"),
            ("PUT", "/v1/backfill/argos", "GET, POST"),
        ] {
            assert_eq!(
                route(method, path),
                Err(RouteError::MethodNotAllowed { allow }),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn unknown_paths_are_404() {
        let long = format!("/v1/subjects/align/{}", "a".repeat(MAX_PATH));
        for path in [
            "/v2/subjects",
            "/v1/subjects/nobody/x",
            "/v1/backfill/nobody",
            "/webhooks/nobody",
            "/webhooks/align/t0k",
            "/v1/backfill",
            "/v1/subjects/align/",
            "/v1/subjects/align/c-1/events/x",
            "/webhooks/argos/",
            "/webhooks/argos",
            "/healthz/",
            "/../etc/passwd",
            "/dashboard/../wrangler.toml",
            "/dashboard/secrets.txt",
            long.as_str(),
        ] {
            assert_eq!(route("GET", path), Err(RouteError::NotFound), "{path}");
        }
    }

    #[test]
    fn query_strings_decode_like_forms() {
        let pairs = |url| query_pairs(url);
        assert_eq!(pairs("https://x.test/v1/subjects"), vec![]);
        assert_eq!(
            pairs(
                "https://x.test/v1/subjects?status=pending&cursor=align%2Fc-1&x=a+b&flag&=v#frag"
            ),
            vec![
                ("status".into(), "pending".into()),
                ("cursor".into(), "align/c-1".into()),
                ("x".into(), "a b".into()),
                ("flag".into(), String::new()),
                (String::new(), "v".into()),
            ]
        );
        assert_eq!(
            pairs("/p?a=%ff%00"),
            vec![("a".into(), "\u{fffd}\u{0}".into())]
        );
        assert_eq!(pairs("/p?&&a=1&&"), vec![("a".into(), "1".into())]);
    }

    #[test]
    fn path_parameters_are_percent_decoded_once() {
        assert_eq!(path_param("c-1"), "c-1");
        assert_eq!(path_param("a%3Ab%40c%2Bd~e"), "a:b@c+d~e");
        assert_eq!(path_param("a:b@c+d"), "a:b@c+d", "a + stays a + in a path");
        assert_eq!(path_param("..%2F..%2Fetc"), "../../etc");
        assert_eq!(path_param("a%00b"), "a\u{0}b");
        assert_eq!(
            path_param("x%252F"),
            "x%2F",
            "decoded once, not until nothing is left"
        );
        assert_eq!(path_param("%ff"), "\u{fffd}");
        assert_eq!(path_param("%zz%"), "%zz%");
    }

    #[test]
    fn status_codes_come_from_the_error_code() {
        assert_eq!(ErrorCode::MethodNotAllowed.status(), 405);
        assert_eq!(ErrorCode::ConfigurationError.status(), 500);
        assert_eq!(
            ErrorCode::ConfigurationError.as_str(),
            "configuration_error"
        );
        assert_eq!(ErrorCode::UnsupportedMediaType.status(), 415);
        assert_eq!(
            (ErrorCode::Conflict.status(), ErrorCode::Conflict.as_str()),
            (409, "conflict")
        );
    }
}
