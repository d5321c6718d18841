//! An in-process fake of ChirpStack's gRPC `DeviceService`: the methods meterhub's sync calls
//! (list, create, delete, keys), each request checked as ChirpStack would (the API token, the
//! application and device profile, the shape of every EUI and key) and recorded. The rest of
//! the service answers `Unimplemented`: a call meterhub should not make fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use meterhub::chirpstack::api::device_service_server::{DeviceService, DeviceServiceServer};
use meterhub::chirpstack::{api, tonic};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// The token the fake accepts.
pub const TOKEN: &str = "fake-api-token";
/// The one application the fake holds.
pub const APPLICATION: &str = "6c3e5b1a-93d2-4f0e-8a7b-2d4c6e8f0a1b";
/// The device profile devices must be created with.
pub const PROFILE: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
/// The 1.1 AppKey ChirpStack needs filled for a 1.0.x device (meterhub sends zeros).
const ZERO_KEY: &str = "00000000000000000000000000000000";

/// A device as the fake stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its name.
    pub name: String,
    /// JoinEUI.
    pub join_eui: String,
    /// Its 1.0.x AppKey (`nwk_key`), once keys are created.
    pub app_key: Option<String>,
}

/// What the fake holds and saw.
#[derive(Debug, Default)]
pub struct State {
    /// Devices by DevEUI.
    pub devices: BTreeMap<String, Stored>,
    /// Every call, as `Method devEui`.
    pub calls: Vec<String>,
    /// DevEUIs whose creation the fake refuses (as ChirpStack would refuse a bad request).
    pub refuse: BTreeSet<String>,
}

/// The fake, serving on a port of its own until dropped.
pub struct FakeChirpStack {
    /// Its state, shared with the service.
    pub state: Arc<Mutex<State>>,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl FakeChirpStack {
    /// Starts a fake holding no device.
    pub async fn start() -> FakeChirpStack {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let service = DeviceServiceServer::new(Service {
            state: state.clone(),
        });
        let stopped = stop.clone();
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(service, incoming, stopped.cancelled_owned())
                .await;
        });
        FakeChirpStack { state, addr, stop }
    }

    /// The API's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a device (with its AppKey, or none) as if made in ChirpStack's UI.
    pub fn add(&self, dev_eui: &str, name: &str, app_key: Option<&str>) {
        self.lock().devices.insert(
            dev_eui.to_owned(),
            Stored {
                name: name.to_owned(),
                join_eui: "0000000000000000".to_owned(),
                app_key: app_key.map(str::to_owned),
            },
        );
    }

    /// The state.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake state")
    }

    /// The DevEUIs held, in order.
    pub fn dev_euis(&self) -> Vec<String> {
        self.lock().devices.keys().cloned().collect()
    }

    /// The calls made since the last time, emptied.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().calls)
    }
}

impl Drop for FakeChirpStack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Service {
    state: Arc<Mutex<State>>,
}

fn hex(value: &str, digits: usize, what: &str) -> Result<(), Status> {
    if value.len() == digits && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "{what} {value:?} is not {digits} hex digits"
        )))
    }
}

impl Service {
    /// Checks the token, records the call and gives the state.
    fn call<T>(
        &self,
        request: &Request<T>,
        method: &str,
        dev_eui: &str,
    ) -> Result<std::sync::MutexGuard<'_, State>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if authorization != Some(&format!("Bearer {TOKEN}")) {
            return Err(Status::unauthenticated("bad API token"));
        }
        let mut state = self
            .state
            .lock()
            .map_err(|_| Status::internal("poisoned"))?;
        state
            .calls
            .push(format!("{method} {dev_eui}").trim_end().to_owned());
        Ok(state)
    }

    /// Creates (`create`) or replaces a device's keys, checked as ChirpStack checks them.
    fn keys(&self, keys: Option<api::DeviceKeys>, create: bool) -> Result<Response<()>, Status> {
        let keys = keys.ok_or_else(|| Status::invalid_argument("device_keys missing"))?;
        hex(&keys.nwk_key, 32, "nwk_key")?;
        if keys.app_key != ZERO_KEY {
            return Err(Status::invalid_argument(
                "app_key must be zeros for LoRaWAN 1.0.x",
            ));
        }
        let mut state = self
            .state
            .lock()
            .map_err(|_| Status::internal("poisoned"))?;
        let device = state
            .devices
            .get_mut(&keys.dev_eui)
            .ok_or_else(|| Status::not_found("object does not exist"))?;
        match (&device.app_key, create) {
            (Some(_), true) => return Err(Status::already_exists("object already exists")),
            (None, false) => return Err(Status::not_found("object does not exist")),
            _ => {}
        }
        device.app_key = Some(keys.nwk_key);
        Ok(Response::new(()))
    }
}

#[tonic::async_trait]
impl DeviceService for Service {
    async fn create(
        &self,
        request: Request<api::CreateDeviceRequest>,
    ) -> Result<Response<()>, Status> {
        let device = request
            .get_ref()
            .device
            .clone()
            .ok_or_else(|| Status::invalid_argument("device missing"))?;
        let mut state = self.call(&request, "Create", &device.dev_eui)?;
        hex(&device.dev_eui, 16, "dev_eui")?;
        hex(&device.join_eui, 16, "join_eui")?;
        if device.application_id != APPLICATION {
            return Err(Status::not_found("no such application"));
        }
        if device.device_profile_id != PROFILE {
            return Err(Status::not_found("no such device profile"));
        }
        if device.name.is_empty() {
            return Err(Status::invalid_argument("name missing"));
        }
        if state.refuse.contains(&device.dev_eui) {
            return Err(Status::invalid_argument("refused by the test"));
        }
        if state.devices.contains_key(&device.dev_eui) {
            return Err(Status::already_exists("object already exists"));
        }
        state.devices.insert(
            device.dev_eui.clone(),
            Stored {
                name: device.name,
                join_eui: device.join_eui,
                app_key: None,
            },
        );
        Ok(Response::new(()))
    }

    async fn delete(
        &self,
        request: Request<api::DeleteDeviceRequest>,
    ) -> Result<Response<()>, Status> {
        let dev_eui = request.get_ref().dev_eui.clone();
        let mut state = self.call(&request, "Delete", &dev_eui)?;
        match state.devices.remove(&dev_eui) {
            Some(_) => Ok(Response::new(())),
            None => Err(Status::not_found("object does not exist")),
        }
    }

    async fn list(
        &self,
        request: Request<api::ListDevicesRequest>,
    ) -> Result<Response<api::ListDevicesResponse>, Status> {
        let state = self.call(&request, "List", "")?;
        let r = request.get_ref();
        if r.application_id != APPLICATION {
            return Err(Status::invalid_argument(
                "application_id must be the fake's",
            ));
        }
        if r.limit == 0 {
            return Err(Status::invalid_argument("limit 0 lists nothing"));
        }
        let result: Vec<api::DeviceListItem> = state
            .devices
            .iter()
            .skip(r.offset as usize)
            .take(r.limit as usize)
            .map(|(dev_eui, d)| api::DeviceListItem {
                dev_eui: dev_eui.clone(),
                name: d.name.clone(),
                device_profile_id: PROFILE.to_owned(),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(api::ListDevicesResponse {
            total_count: state.devices.len() as u32,
            result,
        }))
    }

    async fn create_keys(
        &self,
        request: Request<api::CreateDeviceKeysRequest>,
    ) -> Result<Response<()>, Status> {
        let keys = request.get_ref().device_keys.clone();
        let dev_eui = keys.as_ref().map(|k| k.dev_eui.clone()).unwrap_or_default();
        drop(self.call(&request, "CreateKeys", &dev_eui)?);
        self.keys(keys, true)
    }

    async fn get_keys(
        &self,
        request: Request<api::GetDeviceKeysRequest>,
    ) -> Result<Response<api::GetDeviceKeysResponse>, Status> {
        let dev_eui = request.get_ref().dev_eui.clone();
        let state = self.call(&request, "GetKeys", &dev_eui)?;
        let device = state
            .devices
            .get(&dev_eui)
            .ok_or_else(|| Status::not_found("object does not exist"))?;
        let key = device
            .app_key
            .clone()
            .ok_or_else(|| Status::not_found("object does not exist"))?;
        Ok(Response::new(api::GetDeviceKeysResponse {
            device_keys: Some(api::DeviceKeys {
                dev_eui,
                nwk_key: key,
                app_key: ZERO_KEY.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn update_keys(
        &self,
        request: Request<api::UpdateDeviceKeysRequest>,
    ) -> Result<Response<()>, Status> {
        let keys = request.get_ref().device_keys.clone();
        let dev_eui = keys.as_ref().map(|k| k.dev_eui.clone()).unwrap_or_default();
        drop(self.call(&request, "UpdateKeys", &dev_eui)?);
        self.keys(keys, false)
    }

    // Not called by meterhub: answered as unimplemented, so that a call fails the test.

    async fn get(
        &self,
        _: Request<api::GetDeviceRequest>,
    ) -> Result<Response<api::GetDeviceResponse>, Status> {
        Err(Status::unimplemented("get"))
    }

    async fn update(&self, _: Request<api::UpdateDeviceRequest>) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("update"))
    }

    async fn delete_keys(
        &self,
        _: Request<api::DeleteDeviceKeysRequest>,
    ) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("delete_keys"))
    }

    async fn flush_dev_nonces(
        &self,
        _: Request<api::FlushDevNoncesRequest>,
    ) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("flush_dev_nonces"))
    }

    async fn activate(
        &self,
        _: Request<api::ActivateDeviceRequest>,
    ) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("activate"))
    }

    async fn deactivate(
        &self,
        _: Request<api::DeactivateDeviceRequest>,
    ) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("deactivate"))
    }

    async fn get_activation(
        &self,
        _: Request<api::GetDeviceActivationRequest>,
    ) -> Result<Response<api::GetDeviceActivationResponse>, Status> {
        Err(Status::unimplemented("get_activation"))
    }

    async fn get_random_dev_addr(
        &self,
        _: Request<api::GetRandomDevAddrRequest>,
    ) -> Result<Response<api::GetRandomDevAddrResponse>, Status> {
        Err(Status::unimplemented("get_random_dev_addr"))
    }

    async fn get_metrics(
        &self,
        _: Request<api::GetDeviceMetricsRequest>,
    ) -> Result<Response<api::GetDeviceMetricsResponse>, Status> {
        Err(Status::unimplemented("get_metrics"))
    }

    async fn get_link_metrics(
        &self,
        _: Request<api::GetDeviceLinkMetricsRequest>,
    ) -> Result<Response<api::GetDeviceLinkMetricsResponse>, Status> {
        Err(Status::unimplemented("get_link_metrics"))
    }

    async fn enqueue(
        &self,
        _: Request<api::EnqueueDeviceQueueItemRequest>,
    ) -> Result<Response<api::EnqueueDeviceQueueItemResponse>, Status> {
        Err(Status::unimplemented("enqueue"))
    }

    async fn flush_queue(
        &self,
        _: Request<api::FlushDeviceQueueRequest>,
    ) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("flush_queue"))
    }

    async fn get_queue(
        &self,
        _: Request<api::GetDeviceQueueItemsRequest>,
    ) -> Result<Response<api::GetDeviceQueueItemsResponse>, Status> {
        Err(Status::unimplemented("get_queue"))
    }

    async fn get_next_f_cnt_down(
        &self,
        _: Request<api::GetDeviceNextFCntDownRequest>,
    ) -> Result<Response<api::GetDeviceNextFCntDownResponse>, Status> {
        Err(Status::unimplemented("get_next_f_cnt_down"))
    }
}
