//! Delivering alarms to a webhook from the durable outbox: each new alarm is POSTed as JSON
//! until an answer in 2xx accepts it; failures back off exponentially (capped at an hour).
//! Delivery is at least once: a receiver deduplicates by `alarmId`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::storage::monitor::OutboxItem;

/// Posts alarms to one URL.
#[derive(Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
}

impl Webhook {
    /// A client for `url` with a per-request timeout.
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Webhook> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("meterhub/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Webhook {
            client,
            url: url.to_owned(),
        })
    }

    /// Delivers one alarm; `Err` says why it was not accepted.
    pub async fn deliver(&self, item: &OutboxItem) -> Result<(), String> {
        let body = body(item);
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("meterhub-alarm-{}", item.id))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }
}

/// The JSON posted: the alarm as raised, with its meter's identity.
pub fn body(item: &OutboxItem) -> String {
    let mut v: Value = serde_json::from_str(&item.payload).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("devEui".into(), Value::String(item.dev_eui.clone()));
        map.insert("serial".into(), Value::String(item.serial.clone()));
        map.insert("regionId".into(), Value::String(item.region_id.clone()));
    }
    v.to_string()
}

/// When to try again after `attempts` failures: 2^attempts seconds, at most an hour (wall
/// time, stretched by the clock's speed into simulated time).
pub fn retry_at(now: DateTime<Utc>, attempts: i32, speed: u64) -> DateTime<Utc> {
    let wall = 1_i64 << attempts.clamp(0, 12);
    let wall = wall.min(3_600);
    now + chrono::Duration::seconds(wall.saturating_mul(i64::try_from(speed).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_alarm_and_its_meter() {
        let item = OutboxItem {
            id: 4,
            payload: r#"{"alarmId":9,"kind":"noConnection"}"#.into(),
            attempts: 0,
            dev_eui: "70b3d57e00000001".into(),
            serial: "12261000012348".into(),
            region_id: "north".into(),
        };
        let v: Value = serde_json::from_str(&body(&item)).expect("json");
        assert_eq!(v["alarmId"], 9);
        assert_eq!(v["kind"], "noConnection");
        assert_eq!(v["devEui"], "70b3d57e00000001");
        assert_eq!(v["regionId"], "north");
    }

    #[test]
    fn retries_back_off_to_an_hour() {
        let now = Utc::now();
        assert_eq!(retry_at(now, 0, 1) - now, chrono::Duration::seconds(1));
        assert_eq!(retry_at(now, 3, 1) - now, chrono::Duration::seconds(8));
        assert_eq!(retry_at(now, 40, 1) - now, chrono::Duration::seconds(3_600));
        assert_eq!(retry_at(now, 3, 60) - now, chrono::Duration::seconds(480));
    }
}
