//! Sessions over plain HTTP (no browser needed): what the cookie holds, and that a changed,
//! expired or revoked one no longer opens a page.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use meterhub::pages::session::{COOKIE, SECRET_NAME, Sessions, new_secret};
use test_support::Dialect;

use super::http::{header, request, sign_in};
use super::seed;

/// Whether the home page opens with `cookie`, or sends the browser to sign in (dropping it).
async fn home_opens(addr: SocketAddr, cookie: &str) -> bool {
    let (status, response) = request(addr, "GET", "/", Some(cookie), "").await;
    match status {
        200 => true,
        303 => {
            assert_eq!(header(&response, "location"), Some("/signin"), "{response}");
            assert!(
                header(&response, "set-cookie").is_some_and(|c| c.contains("Max-Age=0")),
                "the refused cookie is dropped: {response}"
            );
            false
        }
        other => panic!("{other}: {response}"),
    }
}

async fn cookie_holds_no_key(dialect: Dialect) {
    let Some(s) = seed(dialect).await else { return };
    let (cookie, set) = sign_in(s.addr, &s.operator).await;
    let value = &cookie[COOKIE.len() + 1..];
    let secret = s.operator.trim_start_matches("mh_");
    assert!(
        !value.contains(secret) && !set.contains(secret),
        "the key is in the cookie: {set}"
    );
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Max-Age="),
        "{set}"
    );
    assert!(
        home_opens(s.addr, &cookie).await,
        "the session opens the pages"
    );

    // Every change is refused: a character of the signature, the key's id (another live
    // key's), the expiry; and the old form of cookie that held the key itself.
    let parts: Vec<&str> = value.split('.').collect();
    assert_eq!(parts.len(), 4, "{value}");
    let flip = |p: &str| {
        let last = p.chars().last().expect("a character");
        format!(
            "{}{}",
            &p[..p.len() - 1],
            if last == '0' { '1' } else { '0' }
        )
    };
    let viewer = s.viewer_id.simple().to_string();
    let later = (parts[1].parse::<i64>().expect("a number") + 86_400).to_string();
    for forged in [
        [parts[0], parts[1], parts[2], &flip(parts[3])].join("."),
        [viewer.as_str(), parts[1], parts[2], parts[3]].join("."),
        [parts[0], later.as_str(), parts[2], parts[3]].join("."),
        [parts[0], parts[1], &flip(parts[2]), parts[3]].join("."),
        format!("{}.{}", "a".repeat(64), s.operator),
    ] {
        assert!(
            !home_opens(s.addr, &format!("{COOKIE}={forged}")).await,
            "a changed cookie opened the pages: {forged}"
        );
    }
    // A changed cookie cannot post either (a 303 to sign in, nothing done).
    let (status, _) = request(
        s.addr,
        "POST",
        "/signout",
        Some(&format!(
            "{COOKIE}={}",
            [parts[0], later.as_str(), parts[2], parts[3]].join(".")
        )),
        "csrf=x",
    )
    .await;
    assert_eq!(status, 303);
    assert!(home_opens(s.addr, &cookie).await, "the real one still does");
    s.server.stop().await;
}

async fn sessions_end(dialect: Dialect) {
    let Some(s) = seed(dialect).await else { return };
    // The installation's secret, as the server stored it at start: a session signed with it
    // but started 13 hours ago (the default lifetime is 12) is over; 11 hours ago, it is not.
    let secret = s
        .env
        .store
        .installation_secret(SECRET_NAME, &new_secret(), Utc::now())
        .await
        .expect("the stored secret");
    let sessions = Sessions::new(&secret, TimeDelta::hours(12));
    let pair = |started: TimeDelta| {
        format!(
            "{COOKIE}={}",
            sessions.start(s.operator_id, Utc::now() - started).value()
        )
    };
    assert!(home_opens(s.addr, &pair(TimeDelta::hours(11))).await);
    assert!(
        !home_opens(s.addr, &pair(TimeDelta::hours(13))).await,
        "expired"
    );
    let (status, response) = request(
        s.addr,
        "GET",
        "/meters/x",
        Some(&pair(TimeDelta::hours(13))),
        "",
    )
    .await;
    assert_eq!(
        (status, header(&response, "location")),
        (303, Some("/signin"))
    );

    // Revoking the key ends its sessions within the key ring's refresh.
    let (cookie, _) = sign_in(s.addr, &s.viewer).await;
    assert!(home_opens(s.addr, &cookie).await);
    s.env
        .store
        .revoke_api_key(s.viewer_id, Utc::now())
        .await
        .expect("revoked");
    let revoked = Instant::now();
    let limit = meterhub::api::auth::REFRESH_INTERVAL + Duration::from_secs(5);
    while home_opens(s.addr, &cookie).await {
        assert!(
            revoked.elapsed() < limit,
            "the session of a revoked key still opens pages after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        home_opens(s.addr, &pair(TimeDelta::hours(1))).await,
        "other keys' sessions go on"
    );
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cookie_holds_no_key_and_a_changed_one_is_refused_sqlite() {
    cookie_holds_no_key(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cookie_holds_no_key_and_a_changed_one_is_refused_postgres() {
    cookie_holds_no_key(Dialect::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_when_it_expires_or_its_key_is_revoked_sqlite() {
    sessions_end(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_when_it_expires_or_its_key_is_revoked_postgres() {
    sessions_end(Dialect::Postgres).await;
}
