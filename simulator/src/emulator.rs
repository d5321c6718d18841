//! The ChirpStack side of the simulator: the `up` events ChirpStack v4's MQTT integration
//! would publish for a meter's frame, built only from the shared ChirpStack types.

use chrono::{DateTime, Utc};
use firmware_protocol::chirpstack::{
    AckEvent, Bytes, CodeRate, CrcStatus, DeviceInfo, Duration, LogCode, LogEvent, LogLevel,
    LoraModulationInfo, Modulation, Timestamp, TxAckEvent, UplinkEvent, UplinkRxInfo, UplinkTxInfo,
};
use firmware_protocol::{GPS_EPOCH_UNIX, leap_seconds_at_unix};

use crate::meter::Meter;

/// The integration's identity as events carry it.
#[derive(Debug, Clone)]
pub struct Network {
    /// Tenant id.
    pub tenant_id: String,
    /// Application id (also in the topic).
    pub application_id: String,
    /// Device profile id.
    pub device_profile_id: String,
}

impl Network {
    /// The topic of an event of `kind` for a meter (ChirpStack's default template).
    pub fn topic(&self, meter: &Meter, kind: &str) -> String {
        format!(
            "application/{}/device/{}/event/{kind}",
            self.application_id,
            meter.dev_eui_hex()
        )
    }

    /// The `up` event for `frame` sent by `meter` on `f_port` at true time `at`, heard by two
    /// gateways (with GPS time, as ChirpStack reports it when gateways have it).
    pub fn up_event(
        &self,
        meter: &mut Meter,
        f_cnt: u32,
        f_port: u8,
        frame: &[u8],
        at: DateTime<Utc>,
    ) -> UplinkEvent {
        let deduplication_id = meter.rng.uuid().to_string();
        let gps = at.timestamp() - GPS_EPOCH_UNIX + leap_seconds_at_unix(at.timestamp());
        let since_gps = Duration(core::time::Duration::new(
            u64::try_from(gps).unwrap_or_default(),
            at.timestamp_subsec_nanos(),
        ));
        let rssi = -70 - meter.rng.range(0, 50) as i32;
        let snr = 10.0 - meter.rng.range(0, 200) as f32 / 10.0;
        let gateway = |id: &str, rssi: i32, snr: f32, uplink_id: u32| UplinkRxInfo {
            gateway_id: id.to_owned(),
            uplink_id,
            ns_time: Some(Timestamp(at)),
            time_since_gps_epoch: Some(since_gps),
            rssi,
            snr,
            crc_status: CrcStatus::CrcOk,
            ..UplinkRxInfo::default()
        };
        let uplink_id = meter.rng.next_u32();
        UplinkEvent {
            deduplication_id,
            time: Some(Timestamp(at)),
            device_info: Some(self.device_info(meter)),
            dev_addr: format!("{:08x}", meter.index),
            adr: true,
            dr: 5,
            f_cnt,
            f_port: u32::from(f_port),
            data: Bytes(frame.to_vec()),
            rx_info: vec![
                gateway("0016c001ff1e5a7b", rssi, snr, uplink_id),
                gateway(
                    "0016c001ff1e5a8c",
                    rssi - 12,
                    snr - 6.0,
                    uplink_id.wrapping_add(1),
                ),
            ],
            tx_info: Some(UplinkTxInfo {
                frequency: 868_100_000,
                modulation: Some(Modulation::Lora(LoraModulationInfo {
                    bandwidth: 125_000,
                    spreading_factor: 7,
                    code_rate: CodeRate::Cr4_5,
                    ..LoraModulationInfo::default()
                })),
            }),
            region_config_id: "eu868".into(),
            ..UplinkEvent::default()
        }
    }
}

impl Network {
    fn device_info(&self, meter: &Meter) -> DeviceInfo {
        DeviceInfo {
            tenant_id: self.tenant_id.clone(),
            tenant_name: "meterhub-sim".into(),
            application_id: self.application_id.clone(),
            application_name: "meters".into(),
            device_profile_id: self.device_profile_id.clone(),
            device_profile_name: "meterhub-meter-eu868".into(),
            device_name: format!("meter-{:07}", meter.index),
            dev_eui: meter.dev_eui_hex(),
            ..DeviceInfo::default()
        }
    }

    /// The `txack` ChirpStack publishes when the gateway accepted a downlink.
    pub fn txack_event(
        &self,
        meter: &mut Meter,
        queue_item_id: uuid::Uuid,
        f_cnt_down: u32,
        at: DateTime<Utc>,
    ) -> TxAckEvent {
        TxAckEvent {
            downlink_id: meter.rng.next_u32(),
            time: Some(Timestamp(at)),
            device_info: Some(self.device_info(meter)),
            queue_item_id: Some(queue_item_id),
            f_cnt_down,
            gateway_id: "0016c001ff1e5a7b".into(),
            ..TxAckEvent::default()
        }
    }

    /// The `ack` that settles a confirmed downlink at the device's next uplink.
    pub fn ack_event(
        &self,
        meter: &Meter,
        deduplication_id: &str,
        queue_item_id: uuid::Uuid,
        acknowledged: bool,
        f_cnt_down: u32,
        at: DateTime<Utc>,
    ) -> AckEvent {
        AckEvent {
            deduplication_id: deduplication_id.to_owned(),
            time: Some(Timestamp(at)),
            device_info: Some(self.device_info(meter)),
            queue_item_id: Some(queue_item_id),
            acknowledged,
            f_cnt_down,
        }
    }

    /// The `log` ChirpStack publishes instead of an `up` when it refuses an uplink's frame
    /// counter: `UPLINK_F_CNT_RETRANSMISSION` when it repeats the last one accepted,
    /// `UPLINK_F_CNT_RESET` when it went back (both WARNING, context as ChirpStack fills it).
    pub fn f_cnt_event(
        &self,
        meter: &Meter,
        code: LogCode,
        deduplication_id: &str,
        f_cnt: u32,
        at: DateTime<Utc>,
    ) -> LogEvent {
        let description = match code {
            LogCode::UplinkFCntRetransmission => {
                "Uplink was flagged as re-transmission / frame-counter did not increment"
            }
            _ => "Frame-counter reset or rollover detected",
        };
        LogEvent {
            time: Some(Timestamp(at)),
            device_info: Some(self.device_info(meter)),
            level: LogLevel::Warning,
            code,
            description: description.into(),
            context: [
                ("deduplication_id".to_owned(), deduplication_id.to_owned()),
                ("f_cnt_up".to_owned(), f_cnt.to_string()),
            ]
            .into(),
        }
    }

    /// The same uplink as it would come by a second path: a new `deduplicationId` and only
    /// the second gateway's reception (ChirpStack merges copies only within its
    /// deduplication window; one that misses it is a new uplink event).
    pub fn second_path(&self, up: &UplinkEvent, deduplication_id: String) -> UplinkEvent {
        let mut other = up.clone();
        other.deduplication_id = deduplication_id;
        if other.rx_info.len() > 1 {
            other.rx_info.remove(0);
        }
        other
    }

    /// The EXPIRED `log` of a queue item dropped unsent.
    pub fn expired_event(
        &self,
        meter: &Meter,
        queue_item_id: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> LogEvent {
        LogEvent {
            time: Some(Timestamp(at)),
            device_info: Some(self.device_info(meter)),
            level: LogLevel::Error,
            code: LogCode::Expired,
            description: "Queue item has expired and has been removed".into(),
            context: [("queue_item_id".to_owned(), queue_item_id.to_string())].into(),
        }
    }
}
