//! The OpenAPI document against the routes the server really answers.

use std::collections::BTreeSet;

use meterhub::api::routes::ROUTES;
use test_support::Dialect;

use crate::support::*;

/// A path of the document with its parameters filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| match s {
            "{meter}" => dev_eui(1),
            "{region}" => "south".into(),
            "{key}" => uuid::Uuid::new_v4().to_string(),
            s if s.starts_with('{') => "1".into(),
            s => s.into(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn no_route(r: &Reply) -> bool {
    r.status == 405 || (r.status == 404 && r.text().contains("no route"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_exactly_the_routes_the_server_answers() {
    let Some(api) = TestApi::start(Dialect::Sqlite).await else {
        return;
    };
    let doc = request(api.addr, "GET", "/api/v1/openapi.json", None, None, &[])
        .await
        .json();
    let mut documented = BTreeSet::new();
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for (method, op) in methods.as_object().expect("methods") {
            documented.insert((method.to_ascii_uppercase(), path.clone()));
            assert!(op["responses"].is_object(), "{method} {path}");
        }
    }
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(documented, table);
    assert!(documented.len() >= 20, "{documented:?}");
    // Every documented operation is answered (by its handler: a resource may be missing,
    // the route may not)…
    for (method, path) in &documented {
        let url = format!("/api/v1{}", concrete(path));
        let r = request(api.addr, method, &url, Some(&api.admin), Some(b"{}"), &[]).await;
        assert!(
            !no_route(&r),
            "{method} {url} is documented but not served: {}",
            r.text()
        );
    }
    // …and nothing else is: other methods on documented paths, and undocumented paths.
    for path in documented.iter().map(|(_, p)| p).collect::<BTreeSet<_>>() {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if documented.contains(&(method.to_owned(), path.clone())) {
                continue;
            }
            let url = format!("/api/v1{}", concrete(path));
            let r = request(api.addr, method, &url, Some(&api.admin), None, &[]).await;
            assert_eq!(r.status, 405, "{method} {url}");
            assert!(r.header("allow").is_some());
        }
    }
    for url in [
        "/api/v1/meter",
        "/api/v1/meters/x/y/z",
        "/api/v1/",
        "/api/v2/meters",
    ] {
        let r = request(api.addr, "GET", url, Some(&api.admin), None, &[]).await;
        assert_eq!(r.status, 404, "{url}");
    }
    api.stop().await;
}
