//! OTAA keys on install: stored, never answered, refused by field without echoing the AppKey;
//! and, built with `chirpstack-sync`, a running server keeping a fake ChirpStack's device list
//! in step after an install and a retirement through the API.

use serde_json::{Value, json};
use test_support::Dialect;

use crate::support::*;

const APP_KEY: &str = "000102030405060708090a0b0c0d0e0f";

fn with_keys(n: u32, application_id: &str) -> Value {
    let mut body = meter_body(n);
    body["applicationId"] = json!(application_id);
    body["joinEui"] = json!("70B3D57ED0000000");
    body["appKey"] = json!(APP_KEY.to_ascii_uppercase());
    body
}

#[tokio::test]
async fn keys_given_at_install_are_stored_and_never_answered() {
    for dialect in Dialect::ALL {
        let Some(api) = TestApi::start(dialect).await else {
            continue;
        };
        let r = api.post("/api/v1/meters", Some(with_keys(1, APP))).await;
        assert_eq!(r.status, 201, "{}", r.text());
        for answer in [r, api.get(&format!("/api/v1/meters/{}", dev_eui(1))).await] {
            let text = answer.text().to_ascii_lowercase();
            assert!(!text.contains(APP_KEY), "{text}");
            assert!(!text.contains("appkey"), "{text}");
        }
        let stored = api.env.store.synced_meters().await.expect("read");
        let keys = stored[0].keys.as_ref().expect("keys");
        assert_eq!(keys.join_eui, "70b3d57ed0000000");
        assert_eq!(keys.app_key, APP_KEY);

        // Refused by field, the value never repeated.
        let mut bad = with_keys(2, APP);
        bad["appKey"] = json!("secret-but-not-hex-0123456789abc");
        let r = api.post("/api/v1/meters", Some(bad)).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["field"], "appKey", "{}", r.text());
        assert!(!r.text().contains("secret-but"), "{}", r.text());
        let mut alone = meter_body(3);
        alone["appKey"] = json!(APP_KEY);
        let r = api.post("/api/v1/meters", Some(alone)).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["field"], "joinEui", "{}", r.text());
        api.stop().await;
    }
}

#[cfg(feature = "chirpstack-sync")]
#[tokio::test]
async fn an_install_and_a_retirement_reach_chirpstack_without_waiting_for_a_round() {
    use std::time::{Duration, Instant};

    use crate::fake::{APPLICATION, FakeChirpStack, PROFILE, TOKEN};

    for dialect in Dialect::ALL {
        let fake = FakeChirpStack::start().await;
        let url = fake.url();
        let Some(api) = TestApi::start_with(dialect, |s| {
            s.chirpstack.api_url = Some(url);
            s.chirpstack.api_token = Some(meterhub::config::Secret(TOKEN.to_owned()));
            s.chirpstack.application_id = Some(APPLICATION.to_owned());
            s.chirpstack.device_profile_id = Some(PROFILE.to_owned());
            // Only the rounds an install or a retirement asks for, within the test.
            s.chirpstack.sync_interval_secs = 3_600;
        })
        .await
        else {
            continue;
        };
        let until = |want: bool| {
            let fake = &fake;
            async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                while fake.dev_euis().contains(&dev_eui(1)) != want {
                    assert!(Instant::now() < deadline, "{:?}", fake.lock().calls);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        // The first periodic round may already have run (and found nothing).
        let r = api
            .post("/api/v1/meters", Some(with_keys(1, APPLICATION)))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        until(true).await;
        // ChirpStack takes a device and its keys in two calls: wait for the second.
        let deadline = Instant::now() + Duration::from_secs(20);
        while fake.lock().devices[&dev_eui(1)].app_key.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            fake.lock().devices[&dev_eui(1)].app_key.as_deref(),
            Some(APP_KEY)
        );
        let r = api
            .post(
                &format!("/api/v1/meters/{}/retire", dev_eui(1)),
                Some(json!({"outcome": "destruction", "reason": "burnt"})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        until(false).await;
        let metrics = api.get("/metrics").await.text();
        for line in [
            "meterhub_chirpstack_devices_created_total 1",
            "meterhub_chirpstack_devices_deleted_total 1",
            "meterhub_chirpstack_sync_failures_total 0",
        ] {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }
        api.stop().await;
    }
}

#[cfg(feature = "chirpstack-sync")]
#[tokio::test]
async fn a_meter_registered_by_another_process_reaches_chirpstack_at_a_periodic_round() {
    use std::time::{Duration, Instant};

    use meterhub::storage::device_keys::OtaaKeys;
    use meterhub::storage::meters::NewMeter;

    use crate::fake::{APPLICATION, FakeChirpStack, PROFILE, TOKEN};

    for dialect in Dialect::ALL {
        let fake = FakeChirpStack::start().await;
        let url = fake.url();
        let Some(api) = TestApi::start_with(dialect, |s| {
            s.chirpstack.api_url = Some(url);
            s.chirpstack.api_token = Some(meterhub::config::Secret(TOKEN.to_owned()));
            s.chirpstack.application_id = Some(APPLICATION.to_owned());
            s.chirpstack.device_profile_id = Some(PROFILE.to_owned());
            s.chirpstack.sync_interval_secs = 1;
        })
        .await
        else {
            continue;
        };
        // Written to the database directly, as an import from another process would: no
        // round is asked for; the scheduler's lease holder finds it.
        let meter = NewMeter {
            dev_eui: dev_eui(7),
            serial: serial(7).to_string(),
            body_number: 7,
            user_id: "user-7".into(),
            application_id: APPLICATION.into(),
            region_id: "north".into(),
            usage_type: "residential".into(),
            mode: "credit".into(),
            production_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 15).expect("date"),
            reporting_interval_minutes: 1440,
        };
        let now = chrono::Utc::now();
        api.env
            .store
            .register_meter(&meter, now)
            .await
            .expect("register");
        let keys = OtaaKeys {
            join_eui: "70b3d57ed0000000".into(),
            app_key: APP_KEY.into(),
        };
        api.env
            .store
            .set_device_keys(&meter.dev_eui, &keys, now)
            .await
            .expect("keys");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !fake.dev_euis().contains(&dev_eui(7)) {
            assert!(Instant::now() < deadline, "{:?}", fake.lock().calls);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        api.stop().await;
    }
}
