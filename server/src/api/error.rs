//! Errors as `application/problem+json` (RFC 9457): a status, a title, a detail for people and,
//! for bad input, the offending field. Internal errors are logged in full and answered with a
//! generic detail: database messages, paths and addresses never reach a client.

use serde::Serialize;
use warp::http::StatusCode;

use crate::storage::Error as StorageError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// Always `about:blank`: the status and title say it all.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The status's standard phrase.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// The query parameter, path parameter or body field at fault (a path such as
    /// `readings[2].time` inside a body).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    /// A problem with this status and detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    /// 400 naming the field at fault.
    pub fn bad_field(field: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem {
            field: Some(field.into()),
            ..Problem::new(StatusCode::BAD_REQUEST, detail)
        }
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409.
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, detail)
    }

    /// With the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }

    /// The status as a type.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 500 for a failure of ours: logged with its whole chain, answered without it.
    pub fn internal(error: &dyn std::fmt::Display) -> Problem {
        tracing::error!(error = %error, "API request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server could not complete the request; it has been logged",
        )
    }

    /// 503 while the database is unreachable: worth retrying.
    pub fn unavailable(error: &dyn std::fmt::Display) -> Problem {
        tracing::warn!(error = %error, "API request failed: database unavailable");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable; retry later",
        )
    }
}

impl From<StorageError> for Problem {
    fn from(e: StorageError) -> Problem {
        match e {
            StorageError::NotFound => Problem::not_found("no such resource"),
            StorageError::Conflict(detail) => Problem::conflict(detail),
            e if e.is_transient() => Problem::unavailable(&e),
            e => Problem::internal(&e),
        }
    }
}

/// A JSON body error as the field path serde reached and a message without Rust type names.
pub fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let message = clean_message(&inner.to_string());
    // Broken JSON is the body's fault as a whole, wherever the parser gave up.
    if inner.is_syntax() || inner.is_eof() {
        return Problem::bad_field("body", format!("the body is not valid JSON: {message}"));
    }
    match field_name(&path, &message) {
        Some(field) => Problem::bad_field(field, message),
        None => Problem::bad_field("body", message),
    }
}

/// A query-string error, named like [`json_error`].
pub fn query_error(e: serde_path_to_error::Error<serde_urlencoded::de::Error>) -> Problem {
    let path = e.path().to_string();
    let message = clean_message(&e.into_inner().to_string());
    let field = field_name(&path, &message).unwrap_or_else(|| "query".to_owned());
    Problem::bad_field(field, message)
}

/// The field at fault: the path serde reached, plus the field its message names when the
/// error is about a field missing or not expected there.
fn field_name(path: &str, message: &str) -> Option<String> {
    let top = path == "." || path.is_empty();
    match (unknown_field(message), top) {
        (Some(f), true) => Some(f),
        // serde_path_to_error already ends the path with an unknown field, not a missing one.
        (Some(f), false) if path == f || path.ends_with(&format!(".{f}")) => Some(path.to_owned()),
        (Some(f), false) => Some(format!("{path}.{f}")),
        (None, true) => None,
        (None, false) => Some(path.to_owned()),
    }
}

/// serde names an unknown or missing field in its message, not in its path.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message
        .split_once("unknown field `")
        .or_else(|| message.split_once("missing field `"))?
        .1;
    rest.split_once('`').map(|(f, _)| f.to_owned())
}

/// Drops serde's " at line 1 column 7" (the field is named instead).
fn clean_message(message: &str) -> String {
    match message.rsplit_once(" at line ") {
        Some((head, _)) => head.to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn parse(text: &str) -> Problem {
        let mut d = serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, Body>(&mut d) {
            Ok(_) => panic!("{text} parsed"),
            Err(e) => json_error(e),
        }
    }

    #[test]
    fn body_errors_name_the_nested_field() {
        let p = parse(r#"{"inner": {"count": "many"}}"#);
        assert_eq!(p.field.as_deref(), Some("inner.count"));
        assert_eq!(p.status, 400);
        assert!(!p.detail.contains("line"), "{}", p.detail);
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        assert_eq!(
            parse(r#"{"inner": {"count": 1, "colour": 2}}"#)
                .field
                .as_deref(),
            Some("inner.colour")
        );
        assert_eq!(parse(r#"{}"#).field.as_deref(), Some("inner"));
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let p = Problem::internal(&"relation \"secret_table\" at 10.0.0.5 does not exist");
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("secret_table"), "{}", p.detail);
    }
}
