//! The running server's scheduler removes what `[retention]` no longer keeps, under its
//! lease, and the API lists what remains.

use chrono::{Duration, Utc};
use meterhub::storage::quarantine::NewQuarantined;
use test_support::Dialect;

use crate::support::TestApi;

async fn old_quarantine_goes(dialect: Dialect) {
    let Some(api) = TestApi::start_seeded(
        dialect,
        |s| s.retention.quarantine_days = Some(1),
        |env| {
            Box::pin(async move {
                let rows: Vec<NewQuarantined> = [Duration::days(2), Duration::hours(1)]
                    .iter()
                    .enumerate()
                    .map(|(i, age)| NewQuarantined {
                        received_at: Utc::now() - *age,
                        topic: format!("application/a/device/d/event/up/{i}"),
                        payload: vec![b'x', u8::try_from(i).unwrap_or(0)],
                        reason: "malformed_json".into(),
                        detail: "not JSON".into(),
                        dev_eui: None,
                    })
                    .collect();
                env.store.quarantine(&rows).await.expect("quarantine");
            })
        },
    )
    .await
    else {
        return;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let list = api.get("/api/v1/quarantine").await.json();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        if items.len() == 1 {
            assert_eq!(items[0]["topic"], "application/a/device/d/event/up/1");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old message is still listed: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    api.stop().await;
}

#[tokio::test]
async fn the_scheduler_removes_old_quarantined_messages_sqlite() {
    old_quarantine_goes(Dialect::Sqlite).await;
}

#[tokio::test]
async fn the_scheduler_removes_old_quarantined_messages_postgres() {
    old_quarantine_goes(Dialect::Postgres).await;
}
