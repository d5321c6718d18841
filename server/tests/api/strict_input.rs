//! Input the handlers never see: text that is not UTF-8 or holds NUL (on both stores), bodies
//! not declared JSON, HEAD as GET without a body, forged cursors, and the last admin key.

use meterhub::api::routes::ROUTES;
use serde_json::json;
use test_support::Dialect;

use crate::support::*;

/// `route.path` with parameter `which` set to `value` and the others to a harmless word.
fn path_with(path: &str, which: Option<usize>, value: &str) -> String {
    let mut i = 0;
    let segments: Vec<String> = path
        .split('/')
        .map(|s| {
            if s.starts_with('{') {
                i += 1;
                if Some(i - 1) == which {
                    return value.to_owned();
                }
                return "x".to_owned();
            }
            s.to_owned()
        })
        .collect();
    format!("/api/v1{}", segments.join("/"))
}

fn params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// The issue's cases and, for every route, every path parameter, query parameter and body
/// holding NUL or bytes that are not UTF-8: 400 naming the field, never a 500 or an empty 200.
async fn nul_and_invalid_utf8_are_refused_by_name(dialect: Dialect) {
    let Some(api) = TestApi::start(dialect).await else {
        return;
    };
    let r = api.post("/api/v1/meters", Some(meter_body(1))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let m = dev_eui(1);
    let mut cases: Vec<(&str, String, Option<String>, String)> = vec![
        (
            "GET",
            "/api/v1/meters?region=%00".into(),
            None,
            "region".into(),
        ),
        (
            "GET",
            "/api/v1/meters?userId=a%00b".into(),
            None,
            "userId".into(),
        ),
        (
            "GET",
            "/api/v1/meters?region=%FF".into(),
            None,
            "region".into(),
        ),
        ("GET", "/api/v1/meters?%FF=1".into(), None, "query".into()),
        ("GET", "/api/v1/alarms?kind=%00".into(), None, "kind".into()),
        (
            "GET",
            "/api/v1/regions/%00/readings/latest".into(),
            None,
            "region".into(),
        ),
        (
            "GET",
            "/api/v1/regions/%C3/readings/latest".into(),
            None,
            "region".into(),
        ),
        (
            "GET",
            format!("/api/v1/meters/{m}%00"),
            None,
            "meter".into(),
        ),
    ];
    let body = |field: &str, value: serde_json::Value| {
        let mut b = meter_body(2);
        b[field] = value;
        Some(b.to_string())
    };
    for field in ["userId", "region"] {
        cases.push((
            "POST",
            "/api/v1/meters".into(),
            body(field, json!("a\0b")),
            field.into(),
        ));
    }
    cases.push((
        "POST",
        "/api/v1/keys".into(),
        Some(json!({"name": "a\0", "role": "viewer"}).to_string()),
        "name".into(),
    ));
    for field in ["inspector", "notes"] {
        let mut b = json!({
            "visitedAt": "2026-01-20T10:00:00Z", "inspector": "crew", "outcome": "ok",
            "notes": "fine",
        });
        b[field] = json!("\0");
        cases.push((
            "POST",
            format!("/api/v1/meters/{m}/inspections"),
            Some(b.to_string()),
            field.into(),
        ));
    }
    for route in ROUTES {
        for (i, name) in params(route.path).into_iter().enumerate() {
            for bad in ["%00", "a%00", "%FF"] {
                let path = path_with(route.path, Some(i), bad);
                cases.push((route.method, path, None, name.to_owned()));
            }
        }
        for name in meterhub::api::openapi::query_names(route) {
            for bad in ["%00", "x%00y", "%E2%82"] {
                let path = format!("{}?{}={bad}", path_with(route.path, None, "x"), name);
                cases.push((route.method, path, None, name.clone()));
            }
        }
        if route.body.is_some() {
            let path = path_with(route.path, None, "x");
            let nested = json!({"a": [{"b": "\0"}]}).to_string();
            cases.push((route.method, path, Some(nested), "a[0].b".into()));
        }
    }
    for (method, path, body, field) in cases {
        let r = request(
            api.addr,
            method,
            &path,
            Some(&api.admin),
            body.as_deref().map(str::as_bytes),
            &[],
        )
        .await;
        assert_eq!(r.status, 400, "{method} {path}: {}", r.text());
        assert_eq!(problem(&r)["field"], field.as_str(), "{method} {path}");
    }
    // Nothing of it reached the store.
    let meters = api.get("/api/v1/meters").await.json();
    assert_eq!(
        meters["items"].as_array().map(Vec::len),
        Some(1),
        "{meters}"
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_and_invalid_utf8_are_refused_by_name_on_sqlite() {
    nul_and_invalid_utf8_are_refused_by_name(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_and_invalid_utf8_are_refused_by_name_on_postgres() {
    nul_and_invalid_utf8_are_refused_by_name(Dialect::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_as_get_without_a_body() {
    let Some(api) = TestApi::start(Dialect::Sqlite).await else {
        return;
    };
    for path in [
        "/api/v1/regions",
        "/api/v1/meters/0000000000000001",
        "/api/v1/nowhere",
    ] {
        for key in [Some(api.admin.as_str()), None] {
            let get = request(api.addr, "GET", path, key, None, &[]).await;
            let head = request(api.addr, "HEAD", path, key, None, &[]).await;
            assert_eq!(head.status, get.status, "HEAD {path} {key:?}");
            assert!(head.body.is_empty(), "HEAD {path}: {}", head.text());
            assert_eq!(head.header("content-type"), get.header("content-type"));
            assert_eq!(
                head.header("content-length").map(str::to_owned),
                Some(get.body.len().to_string()),
                "HEAD {path} {key:?}"
            );
        }
    }
    let get_only = request(
        api.addr,
        "DELETE",
        "/api/v1/regions",
        Some(&api.admin),
        None,
        &[],
    )
    .await;
    assert_eq!(get_only.status, 405);
    assert_eq!(get_only.header("allow"), Some("GET, HEAD"));
    let post_only = request(
        api.addr,
        "HEAD",
        "/api/v1/keys/x",
        Some(&api.admin),
        None,
        &[],
    )
    .await;
    assert_eq!(post_only.status, 405);
    assert_eq!(post_only.header("allow"), Some("DELETE"));
    for path in ["/health", "/ready", "/metrics"] {
        let head = request(api.addr, "HEAD", path, None, None, &[]).await;
        assert!(
            matches!(head.status, 200 | 503),
            "HEAD {path}: {}",
            head.status
        );
        assert!(head.body.is_empty(), "HEAD {path}");
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_not_declared_json_is_415() {
    let Some(api) = TestApi::start(Dialect::Sqlite).await else {
        return;
    };
    let body = br#"{"name": "portal", "role": "viewer"}"#;
    for content_type in ["", "Content-Type: text/plain\r\n"] {
        let head = format!(
            "POST /api/v1/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Authorization: Bearer {}\r\n{content_type}Content-Length: {}\r\n\r\n",
            api.admin,
            body.len()
        );
        let r = send_raw(api.addr, &head, body).await;
        assert_eq!(r.status, 415, "{content_type:?}: {}", r.text());
        assert_eq!(problem(&r)["field"], "body");
    }
    let keys = api.get("/api/v1/keys").await.json();
    assert_eq!(
        keys["items"].as_array().map(Vec::len),
        Some(3),
        "no key created: {keys}"
    );
    let r = api
        .post(
            "/api/v1/keys",
            Some(json!({"name": "portal", "role": "viewer"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_cursors_are_refused_not_read_as_a_first_page() {
    let Some(api) = TestApi::start(Dialect::Sqlite).await else {
        return;
    };
    for path in [
        "/api/v1/meters?cursor=LTE",
        "/api/v1/meters?cursor=MA",
        "/api/v1/alarms?cursor=LTE",
        "/api/v1/quarantine?cursor=LTE",
        "/api/v1/self-test-schedules?cursor=LTE",
        "/api/v1/connectivity?cursor=LTE",
    ] {
        let r = api.get(path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(problem(&r)["field"], "cursor", "{path}");
    }
    api.stop().await;
}

async fn the_last_admin_key_cannot_be_revoked(dialect: Dialect) {
    let Some(api) = TestApi::start(dialect).await else {
        return;
    };
    let delete = |key: String, id: String| async move {
        request(
            api.addr,
            "DELETE",
            &format!("/api/v1/keys/{id}"),
            Some(&key),
            None,
            &[],
        )
        .await
    };
    let keys = api.get("/api/v1/keys").await.json();
    let id_of = |name: &str| {
        keys["items"]
            .as_array()
            .and_then(|v| v.iter().find(|k| k["name"] == name))
            .and_then(|k| k["id"].as_str())
            .map(str::to_owned)
            .expect("key")
    };
    let first = id_of("admin-key");
    let r = delete(api.admin.clone(), first.clone()).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        problem(&r)["detail"]
            .as_str()
            .is_some_and(|d| d.contains("last admin key"))
    );
    assert_eq!(api.get("/api/v1/keys").await.status, 200, "still in force");

    // With a second admin key, the two keys' holders revoke each other at once: one wins.
    let r = api
        .post(
            "/api/v1/keys",
            Some(json!({"name": "second", "role": "admin"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let second_secret = r.json()["secret"].as_str().expect("secret").to_owned();
    let second = r.json()["id"].as_str().expect("id").to_owned();
    let (a, b) = tokio::join!(
        delete(api.admin.clone(), second.clone()),
        delete(second_secret.clone(), first.clone())
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert!(
        statuses == [204, 409] || statuses == [204, 401],
        "exactly one revoked: {statuses:?} {} {}",
        a.text(),
        b.text()
    );
    let in_force: Vec<_> = api
        .env
        .store
        .api_keys()
        .await
        .expect("keys")
        .into_iter()
        .filter(|k| k.role == "admin" && k.revoked_at.is_none())
        .collect();
    assert_eq!(in_force.len(), 1, "one admin key left: {in_force:?}");
    // Viewer and operator keys are revoked as before.
    let viewer = id_of("viewer-key");
    let admin = if in_force[0].id.to_string() == first {
        api.admin.clone()
    } else {
        second_secret
    };
    assert_eq!(delete(admin, viewer).await.status, 204);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_key_cannot_be_revoked_on_sqlite() {
    the_last_admin_key_cannot_be_revoked(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_key_cannot_be_revoked_on_postgres() {
    the_last_admin_key_cannot_be_revoked(Dialect::Postgres).await;
}
