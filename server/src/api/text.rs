//! The one check every request's text passes before a handler sees it: path segments, query
//! parameters and JSON body strings must be UTF-8 without NUL. PostgreSQL refuses NUL in text
//! (a 500 deep in a query) and SQLite would store it; a query that is not UTF-8 used to be
//! read lossily and match nothing. Checking here, once, gives both stores one answer: a 400
//! naming the field.

use serde_json::Value;
use warp::http::{HeaderMap, StatusCode};

use super::error::Problem;
use super::routes::Route;

/// Decodes the route's path parameters (percent-encoded UTF-8 without NUL), each named in
/// an error by its `{name}` in the route's path.
pub fn path_params(route: &Route, raw: Vec<String>) -> Result<Vec<String>, Problem> {
    let mut names = route
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')));
    raw.into_iter()
        .map(|segment| {
            let name = names.next().unwrap_or("path");
            let bytes = percent_decode(segment.as_bytes(), false)
                .ok_or_else(|| Problem::bad_field(name, "not valid percent-encoding"))?;
            text(bytes, name)
        })
        .collect()
}

/// Checks every name and value of a raw query string; a name that is not text is blamed on
/// `query`, a value on its parameter.
pub fn query(raw: &str) -> Result<(), Problem> {
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Forms leave a malformed escape as it is (`form_urlencoded`), so do we.
        let name = text(
            percent_decode(name.as_bytes(), true).unwrap_or_else(|| name.as_bytes().to_vec()),
            "query",
        )?;
        let value =
            percent_decode(value.as_bytes(), true).unwrap_or_else(|| value.as_bytes().to_vec());
        text(value, &name)?;
    }
    Ok(())
}

/// A body must be declared JSON (415 otherwise) and its strings, names included, free of NUL.
/// A body that is not JSON at all is left to the handler's parser, which says where it broke.
pub fn body(headers: &HeaderMap, body: &[u8]) -> Result<(), Problem> {
    let declared = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !declared.is_some_and(|t| t.eq_ignore_ascii_case("application/json")) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "the body must be sent as Content-Type: application/json, not {}",
                declared.unwrap_or("(none)")
            ),
        )
        .with_field("body"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => json_strings(&value, ""),
        Err(_) => Ok(()),
    }
}

fn json_strings(value: &Value, path: &str) -> Result<(), Problem> {
    let here = || if path.is_empty() { "body" } else { path };
    match value {
        Value::String(s) if s.contains('\0') => Err(nul(here())),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| json_strings(v, &format!("{}[{i}]", here()))),
        Value::Object(fields) => fields.iter().try_for_each(|(name, v)| {
            let inner = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            if name.contains('\0') {
                return Err(nul(&inner));
            }
            json_strings(v, &inner)
        }),
        _ => Ok(()),
    }
}

fn text(bytes: Vec<u8>, field: &str) -> Result<String, Problem> {
    let s = String::from_utf8(bytes).map_err(|_| Problem::bad_field(field, "not valid UTF-8"))?;
    if s.contains('\0') {
        return Err(nul(field));
    }
    Ok(s)
}

/// One percent-encoded path segment as text (UTF-8 without NUL), or a 400 naming `field`.
pub fn segment(raw: &str, field: &str) -> Result<String, Problem> {
    let bytes = percent_decode(raw.as_bytes(), false)
        .ok_or_else(|| Problem::bad_field(field, "not valid percent-encoding"))?;
    text(bytes, field)
}

fn nul(field: &str) -> Problem {
    Problem::bad_field(field, "text may not contain a NUL character (%00, \\u0000)")
}

/// Decodes `%XX` escapes (and `+` as a space in a query); `None` for a malformed escape.
fn percent_decode(bytes: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routes::ROUTES;

    fn json_headers(content_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = content_type {
            h.insert("content-type", t.parse().expect("header"));
        }
        h
    }

    fn field(p: Problem) -> String {
        p.field.unwrap_or_default()
    }

    #[test]
    fn path_parameters_are_named_by_the_route() {
        let route = ROUTES
            .iter()
            .find(|r| r.path == "/regions/{region}/readings/latest")
            .expect("route");
        assert_eq!(
            path_params(route, vec!["s%C3%BCd".into()]).ok(),
            Some(vec!["süd".to_owned()])
        );
        for bad in ["%00", "a%00b", "%FF", "%C3", "%zz", "%4"] {
            let p = path_params(route, vec![bad.into()]).expect_err(bad);
            assert_eq!((p.status, field(p)), (400, "region".to_owned()), "{bad}");
        }
    }

    #[test]
    fn query_values_are_blamed_on_their_parameter() {
        assert!(query("region=north&userId=a+b%20c&cursor=").is_ok());
        assert!(query("").is_ok());
        assert!(query("odd=%zz").is_ok(), "a malformed escape stays literal");
        for (raw, blamed) in [
            ("region=%00", "region"),
            ("limit=5&userId=a%00b", "userId"),
            ("kind=%FF", "kind"),
            ("%FF=1", "query"),
            ("a%00=1", "query"),
        ] {
            let p = query(raw).expect_err(raw);
            assert_eq!((p.status, field(p)), (400, blamed.to_owned()), "{raw}");
        }
    }

    #[test]
    fn body_strings_are_blamed_by_their_path() {
        let h = json_headers(Some("application/json; charset=utf-8"));
        assert!(body(&h, br#"{"name": "ok", "tests": ["a"]}"#).is_ok());
        assert!(body(&h, b"{not json").is_ok(), "left to the handler");
        for (raw, blamed) in [
            (r#"{"name": "a\u0000b"}"#, "name"),
            (r#"{"inner": {"notes": "\u0000"}}"#, "inner.notes"),
            (r#"{"tests": ["ok", "x\u0000"]}"#, "tests[1]"),
            (r#"{"na\u0000me": 1}"#, "na\0me"),
            (r#""\u0000""#, "body"),
            (r#"["\u0000"]"#, "body[0]"),
        ] {
            let p = body(&h, raw.as_bytes()).expect_err(raw);
            assert_eq!((p.status, field(p)), (400, blamed.to_owned()), "{raw}");
        }
    }

    #[test]
    fn a_body_not_declared_json_is_415() {
        for t in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let p = body(&json_headers(t), b"{}").expect_err("not JSON");
            assert_eq!((p.status, field(p)), (415, "body".to_owned()), "{t:?}");
        }
        assert!(body(&json_headers(Some("Application/JSON")), b"{}").is_ok());
    }
}
