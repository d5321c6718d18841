//! Provisioning a ChirpStack v4 for meterhub's meters through its gRPC API: the gateways, a
//! device profile for the meters' firmware, an application and each device with its root key.
//!
//! Nothing here is specific to tests: it takes a ChirpStack API URL, an API token and what to
//! create, and returns the ids ChirpStack assigned. The profile is the one docs/chirpstack.md
//! describes (EU868, LoRaWAN 1.0.3 rev A, OTAA, class A, TS003 left to meterhub, queue flushed
//! on activation, the project's JavaScript codec).

use anyhow::{Context as _, Result};
use chirpstack_api::api;
use chirpstack_api::common;
use chirpstack_api::tonic;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// The project's payload codec, as ChirpStack's device profile takes it.
pub const CODEC_SCRIPT: &str = include_str!("../../../firmware-protocol/codec/meterhub.js");

/// A connection to ChirpStack's gRPC API with an API token.
#[derive(Clone)]
pub struct ChirpStackApi {
    channel: Channel,
    authorization: MetadataValue<Ascii>,
}

/// A device to create: DevEUI, JoinEUI and root key as hex, as ChirpStack's API takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    /// DevEUI, 16 hex digits.
    pub dev_eui: String,
    /// JoinEUI (AppEUI), 16 hex digits.
    pub join_eui: String,
    /// The LoRaWAN 1.0.x AppKey, 32 hex digits.
    pub app_key: String,
    /// The device's name in ChirpStack.
    pub name: String,
}

impl ChirpStackApi {
    /// Connects to the API at `url` (`http://127.0.0.1:8080`) with an API token made by
    /// `chirpstack create-api-key` or ChirpStack's UI.
    pub async fn connect(url: &str, token: &str) -> Result<ChirpStackApi> {
        let channel = Endpoint::from_shared(url.to_owned())
            .with_context(|| format!("{url} is not a URL"))?
            .connect()
            .await
            .with_context(|| format!("cannot reach ChirpStack's API at {url}"))?;
        let authorization = format!("Bearer {token}")
            .parse()
            .context("the API token is not printable ASCII")?;
        Ok(ChirpStackApi {
            channel,
            authorization,
        })
    }

    /// `message` with the API token attached.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    /// The id of the first tenant (ChirpStack creates one, "ChirpStack", on its first start).
    pub async fn first_tenant(&self) -> Result<String> {
        let mut client = api::tenant_service_client::TenantServiceClient::new(self.channel.clone());
        let answer = client
            .list(self.request(api::ListTenantsRequest {
                limit: 1,
                ..Default::default()
            }))
            .await
            .context("listing tenants")?
            .into_inner();
        answer
            .result
            .first()
            .map(|t| t.id.clone())
            .context("ChirpStack has no tenant")
    }

    /// Creates the gateway `gateway_eui` (16 hex digits) in `tenant_id`.
    pub async fn create_gateway(&self, tenant_id: &str, gateway_eui: &str) -> Result<()> {
        let mut client =
            api::gateway_service_client::GatewayServiceClient::new(self.channel.clone());
        client
            .create(self.request(api::CreateGatewayRequest {
                gateway: Some(api::Gateway {
                    gateway_id: gateway_eui.to_owned(),
                    name: format!("gw-{gateway_eui}"),
                    tenant_id: tenant_id.to_owned(),
                    // The packet forwarder's usual status interval, seconds.
                    stats_interval: 30,
                    ..Default::default()
                }),
            }))
            .await
            .with_context(|| format!("creating gateway {gateway_eui}"))?;
        Ok(())
    }

    /// Creates the meters' device profile in `tenant_id`; returns its id.
    pub async fn create_device_profile(
        &self,
        tenant_id: &str,
        uplink_interval_secs: u32,
    ) -> Result<String> {
        let mut client = api::device_profile_service_client::DeviceProfileServiceClient::new(
            self.channel.clone(),
        );
        let answer = client
            .create(self.request(api::CreateDeviceProfileRequest {
                device_profile: Some(meter_profile(tenant_id, uplink_interval_secs)),
            }))
            .await
            .context("creating the device profile")?
            .into_inner();
        Ok(answer.id)
    }

    /// Creates an application named `name` in `tenant_id`; returns the id ChirpStack assigned.
    pub async fn create_application(&self, tenant_id: &str, name: &str) -> Result<String> {
        let mut client =
            api::application_service_client::ApplicationServiceClient::new(self.channel.clone());
        let answer = client
            .create(self.request(api::CreateApplicationRequest {
                application: Some(api::Application {
                    name: name.to_owned(),
                    tenant_id: tenant_id.to_owned(),
                    ..Default::default()
                }),
            }))
            .await
            .with_context(|| format!("creating application {name}"))?
            .into_inner();
        Ok(answer.id)
    }

    /// Creates `device` in `application_id` with `device_profile_id`, and its root key.
    pub async fn create_device(
        &self,
        application_id: &str,
        device_profile_id: &str,
        device: &NewDevice,
    ) -> Result<()> {
        let mut client = api::device_service_client::DeviceServiceClient::new(self.channel.clone());
        client
            .create(self.request(api::CreateDeviceRequest {
                device: Some(api::Device {
                    dev_eui: device.dev_eui.clone(),
                    name: device.name.clone(),
                    application_id: application_id.to_owned(),
                    device_profile_id: device_profile_id.to_owned(),
                    join_eui: device.join_eui.clone(),
                    ..Default::default()
                }),
            }))
            .await
            .with_context(|| format!("creating device {}", device.dev_eui))?;
        client
            .create_keys(self.request(api::CreateDeviceKeysRequest {
                device_keys: Some(device_keys(device)),
            }))
            .await
            .with_context(|| format!("creating the keys of device {}", device.dev_eui))?;
        Ok(())
    }
}

/// The device profile of meterhub's meters: EU868, LoRaWAN 1.0.3 rev A, OTAA, class A, the
/// queue flushed when a meter joins again (meterhub re-sends what it had handed over), TS003
/// not implemented (meterhub answers the meters' AppTimeReq itself) and the project's codec.
pub fn meter_profile(tenant_id: &str, uplink_interval_secs: u32) -> api::DeviceProfile {
    api::DeviceProfile {
        tenant_id: tenant_id.to_owned(),
        name: "meterhub meter".to_owned(),
        region: common::Region::Eu868 as i32,
        mac_version: common::MacVersion::Lorawan103 as i32,
        reg_params_revision: common::RegParamsRevision::A as i32,
        adr_algorithm_id: "default".to_owned(),
        payload_codec_runtime: api::CodecRuntime::Js as i32,
        payload_codec_script: CODEC_SCRIPT.to_owned(),
        flush_queue_on_activate: true,
        uplink_interval: uplink_interval_secs,
        supports_otaa: true,
        app_layer_params: Some(api::AppLayerParams {
            ts003_version: api::Ts003Version::Ts003NotImplemented as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A device's keys as ChirpStack stores them: for LoRaWAN 1.0.x the AppKey goes in `nwk_key`
/// (ChirpStack's `app_key` field is the 1.1 AppKey and unused, but must be a valid key).
pub fn device_keys(device: &NewDevice) -> api::DeviceKeys {
    api::DeviceKeys {
        dev_eui: device.dev_eui.clone(),
        nwk_key: device.app_key.clone(),
        app_key: "00000000000000000000000000000000".to_owned(),
        ..Default::default()
    }
}
