//! meterhub's client of ChirpStack v4's gRPC API: the gateways, a device profile for the
//! meters' firmware, an application, and devices with their OTAA root keys (created, listed,
//! deleted). The server keeps ChirpStack's device list in step with its registry through it
//! (`meterhub meters sync`), the simulator provisions a simulated fleet (`meterhub-sim
//! provision`), and the end-to-end suite provisions a real ChirpStack.
//!
//! It takes a ChirpStack API URL, an API token and what to create, and returns the ids ChirpStack
//! assigned. The profile is the one docs/chirpstack.md describes (EU868, LoRaWAN 1.0.3 rev A,
//! OTAA, class A, TS003 left to meterhub, queue flushed on activation, the project's JavaScript
//! codec).

use anyhow::{Context as _, Result};
use chirpstack_api::common;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// ChirpStack's generated API types and tonic, for callers that build requests or serve a fake
/// of the API in tests.
pub use chirpstack_api::{api, tonic};
/// The project's payload codec, as ChirpStack's device profile takes it.
pub const CODEC_SCRIPT: &str = include_str!("../../firmware-protocol/codec/meterhub.js");

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

    /// Creates the gateway `gateway_eui` in `tenant_id` unless it exists; true when created.
    pub async fn ensure_gateway(&self, tenant_id: &str, gateway_eui: &str) -> Result<bool> {
        match self.create_gateway(tenant_id, gateway_eui).await {
            Ok(()) => Ok(true),
            Err(e) if already_exists(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The id of the device profile named `name` in `tenant_id`, if there is one.
    pub async fn find_device_profile(&self, tenant_id: &str, name: &str) -> Result<Option<String>> {
        let mut client = api::device_profile_service_client::DeviceProfileServiceClient::new(
            self.channel.clone(),
        );
        let answer = client
            .list(self.request(api::ListDeviceProfilesRequest {
                limit: 100,
                search: name.to_owned(),
                tenant_id: tenant_id.to_owned(),
                ..Default::default()
            }))
            .await
            .context("listing device profiles")?
            .into_inner();
        Ok(answer
            .result
            .into_iter()
            .find(|p| p.name == name)
            .map(|p| p.id))
    }

    /// The id of the application named `name` in `tenant_id`, if there is one.
    pub async fn find_application(&self, tenant_id: &str, name: &str) -> Result<Option<String>> {
        let mut client =
            api::application_service_client::ApplicationServiceClient::new(self.channel.clone());
        let answer = client
            .list(self.request(api::ListApplicationsRequest {
                limit: 100,
                search: name.to_owned(),
                tenant_id: tenant_id.to_owned(),
                ..Default::default()
            }))
            .await
            .context("listing applications")?
            .into_inner();
        Ok(answer
            .result
            .into_iter()
            .find(|a| a.name == name)
            .map(|a| a.id))
    }

    /// The devices of `application_id`, every page of them, in DevEUI order.
    pub async fn list_devices(&self, application_id: &str) -> Result<Vec<Device>> {
        // ChirpStack answers pages of at most `limit`; a page shorter than that is the last.
        const PAGE: u32 = 1_000;
        let mut client = api::device_service_client::DeviceServiceClient::new(self.channel.clone());
        let mut devices = Vec::new();
        loop {
            let offset = u32::try_from(devices.len()).context("too many devices to list")?;
            let answer = client
                .list(self.request(api::ListDevicesRequest {
                    limit: PAGE,
                    offset,
                    application_id: application_id.to_owned(),
                    order_by: api::list_devices_request::OrderBy::DevEui as i32,
                    ..Default::default()
                }))
                .await
                .with_context(|| format!("listing the devices of application {application_id}"))?
                .into_inner();
            let got = answer.result.len();
            devices.extend(answer.result.into_iter().map(|d| Device {
                dev_eui: d.dev_eui.to_ascii_lowercase(),
                name: d.name,
                device_profile_id: d.device_profile_id,
            }));
            if got < PAGE as usize {
                return Ok(devices);
            }
        }
    }

    /// The LoRaWAN 1.0.x AppKey (lowercase hex) of device `dev_eui`, or `None` when ChirpStack
    /// holds no keys for it.
    pub async fn device_app_key(&self, dev_eui: &str) -> Result<Option<String>> {
        let mut client = api::device_service_client::DeviceServiceClient::new(self.channel.clone());
        match client
            .get_keys(self.request(api::GetDeviceKeysRequest {
                dev_eui: dev_eui.to_owned(),
            }))
            .await
        {
            Ok(answer) => Ok(answer
                .into_inner()
                .device_keys
                .map(|k| k.nwk_key.to_ascii_lowercase())),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => {
                Err(status).with_context(|| format!("reading the keys of device {dev_eui}"))
            }
        }
    }

    /// Sets the root key of device `device.dev_eui`: replaces the keys it has, or creates them
    /// when it has none.
    pub async fn put_device_keys(&self, device: &NewDevice) -> Result<()> {
        let mut client = api::device_service_client::DeviceServiceClient::new(self.channel.clone());
        let keys = Some(device_keys(device));
        match client
            .update_keys(self.request(api::UpdateDeviceKeysRequest {
                device_keys: keys.clone(),
            }))
            .await
        {
            Ok(_) => return Ok(()),
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => {
                return Err(status)
                    .with_context(|| format!("updating the keys of device {}", device.dev_eui));
            }
        }
        client
            .create_keys(self.request(api::CreateDeviceKeysRequest { device_keys: keys }))
            .await
            .with_context(|| format!("creating the keys of device {}", device.dev_eui))?;
        Ok(())
    }

    /// Deletes device `dev_eui` (its keys, activation and queue go with it). A device that is
    /// already gone is not an error: the caller wanted it gone.
    pub async fn delete_device(&self, dev_eui: &str) -> Result<()> {
        let mut client = api::device_service_client::DeviceServiceClient::new(self.channel.clone());
        match client
            .delete(self.request(api::DeleteDeviceRequest {
                dev_eui: dev_eui.to_owned(),
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
            Err(status) => Err(status).with_context(|| format!("deleting device {dev_eui}")),
        }
    }
}

/// Whether `error` is ChirpStack refusing to create what exists already.
pub fn already_exists(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<tonic::Status>()
        .is_some_and(|s| s.code() == tonic::Code::AlreadyExists)
}

/// A device as ChirpStack lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// DevEUI, 16 lowercase hex digits.
    pub dev_eui: String,
    /// The device's name in ChirpStack.
    pub name: String,
    /// Its device profile's id (UUID).
    pub device_profile_id: String,
}

/// The name of the meters' device profile in ChirpStack.
pub const PROFILE_NAME: &str = "meterhub meter";

/// The device profile of meterhub's meters: EU868, LoRaWAN 1.0.3 rev A, OTAA, class A, the
/// queue flushed when a meter joins again (meterhub re-sends what it had handed over), TS003
/// not implemented (meterhub answers the meters' AppTimeReq itself) and the project's codec.
pub fn meter_profile(tenant_id: &str, uplink_interval_secs: u32) -> api::DeviceProfile {
    api::DeviceProfile {
        tenant_id: tenant_id.to_owned(),
        name: PROFILE_NAME.to_owned(),
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
