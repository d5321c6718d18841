//! The downlink MQTT client: its own connection, so that commands never wait behind the
//! bridge's acknowledgements (and the bridge never waits behind a slow publish).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use firmware_protocol::chirpstack::DownlinkCommand;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::MqttSettings;
use crate::metrics::Metrics;
use crate::mqtt::Template;

/// Publishes `command/down` messages.
#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
    template: Arc<Template>,
    metrics: Arc<Metrics>,
}

/// Room for publishes waiting for the connection (a burst of releases after a schedule).
const QUEUE: usize = 4_096;

impl Publisher {
    /// Connects with client id `<client_id>-downlink` and starts its event loop, which runs
    /// until `shutdown`.
    pub fn connect(
        settings: &MqttSettings,
        command_topic: &str,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<(Publisher, JoinHandle<()>)> {
        let mut settings = settings.clone();
        settings.client_id = format!("{}-downlink", settings.client_id);
        let mut options = crate::mqtt::connection::options(&settings, 64)?;
        // Nothing to receive and nothing to resume: a publish lost with the connection is
        // re-sent by the dispatcher's rules (or its command expires), never under a new id.
        options.set_clean_start(true);
        options.set_session_expiry_interval(None);
        options.set_manual_acks(false);
        let (client, mut eventloop) = AsyncClient::new(options, QUEUE);
        let loop_metrics = metrics.clone();
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                tokio::select! {
                    e = eventloop.poll() => match e {
                        Ok(Event::Incoming(rumqttc::v5::Incoming::ConnAck(_))) => {
                            backoff = Duration::from_millis(100);
                            tracing::debug!("downlink client connected");
                        }
                        Ok(_) => {}
                        Err(e) => {
                            loop_metrics.downlink_errors.inc();
                            tracing::warn!(error = %e, retry_in = ?backoff, "downlink MQTT connection lost");
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = shutdown.cancelled() => break,
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    },
                    _ = shutdown.cancelled() => break,
                }
            }
        });
        Ok((
            Publisher {
                client,
                template: Arc::new(Template::parse(command_topic)?),
                metrics,
            },
            task,
        ))
    }

    /// Publishes a command on the device's `command/down` topic (QoS 1). The DevEUI is the
    /// command's, lowercase, in both topic and body.
    pub async fn send(&self, application_id: &str, command: &DownlinkCommand) -> Result<()> {
        let topic = self
            .template
            .render(application_id, &command.dev_eui, "down");
        let body = serde_json::to_vec(command)?;
        self.client
            .publish(topic, QoS::AtLeastOnce, false, body)
            .await?;
        self.metrics.downlinks_published.inc();
        Ok(())
    }
}
