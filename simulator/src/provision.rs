//! `meterhub-sim provision` (cargo feature `provision`): registers a simulated fleet in a real
//! ChirpStack through its gRPC API — the gateways, the meters' device profile, an application
//! and every meter as a device with the same OTAA keys the udp transport joins with — so that
//! `meterhub-sim run --transport udp` can be pointed at it next. Idempotent: what exists
//! (matched by gateway EUI, profile and application name, DevEUI) is kept, the rest created.

use std::collections::HashSet;

use anyhow::{Context as _, Result};
use meterhub_chirpstack::{ChirpStackApi, NewDevice, PROFILE_NAME};

use crate::fleet::{self, FleetSpec};
use crate::udp::FleetKeys;
use crate::udp::keys::hex;

/// What to provision, besides the fleet and its keys.
#[derive(Debug, Clone)]
pub struct Target {
    /// The tenant (UUID); ChirpStack's first one when `None`.
    pub tenant_id: Option<String>,
    /// The application's name: found, or created.
    pub application: String,
    /// The gateways' EUIs.
    pub gateways: Vec<[u8; 8]>,
}

/// What provisioning found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provisioned {
    /// The tenant used.
    pub tenant_id: String,
    /// The application's id: meterhub's `[chirpstack] application_id` and the fleet's
    /// `--application-id`.
    pub application_id: String,
    /// The device profile's id: meterhub's `[chirpstack] device_profile_id`.
    pub device_profile_id: String,
    /// Gateways created (the others existed).
    pub gateways_created: usize,
    /// Devices created.
    pub devices_created: usize,
    /// Devices that existed already (their keys set to the fleet's).
    pub devices_kept: usize,
}

/// The devices that `present` (DevEUIs ChirpStack has) lacks: the ones to create.
pub fn missing<'a>(devices: &'a [NewDevice], present: &HashSet<String>) -> Vec<&'a NewDevice> {
    devices
        .iter()
        .filter(|d| !present.contains(&d.dev_eui))
        .collect()
}

/// The fleet's devices as ChirpStack takes them: DevEUI, JoinEUI and AppKey as the simulated
/// meters join with, named by serial.
pub fn devices(spec: &FleetSpec, keys: &FleetKeys) -> Vec<NewDevice> {
    fleet::build(spec, 0)
        .iter()
        .map(|m| NewDevice {
            dev_eui: m.dev_eui_hex(),
            join_eui: hex(&keys.join_eui),
            app_key: hex(&keys.app_key(m.index)),
            name: m.serial.to_string(),
        })
        .collect()
}

/// Provisions `spec`'s fleet with `keys` in the ChirpStack `api` speaks to.
pub async fn provision(
    api: &ChirpStackApi,
    spec: &FleetSpec,
    keys: &FleetKeys,
    target: &Target,
) -> Result<Provisioned> {
    let tenant_id = match &target.tenant_id {
        Some(id) => id.clone(),
        None => api.first_tenant().await?,
    };
    let mut out = Provisioned {
        tenant_id: tenant_id.clone(),
        ..Provisioned::default()
    };
    for eui in &target.gateways {
        if api.ensure_gateway(&tenant_id, &hex(eui)).await? {
            out.gateways_created += 1;
        }
    }
    let interval = u32::from(spec.reporting_interval_minutes) * 60;
    out.device_profile_id = match api.find_device_profile(&tenant_id, PROFILE_NAME).await? {
        Some(id) => id,
        None => api.create_device_profile(&tenant_id, interval).await?,
    };
    out.application_id = match api
        .find_application(&tenant_id, &target.application)
        .await?
    {
        Some(id) => id,
        None => {
            api.create_application(&tenant_id, &target.application)
                .await?
        }
    };
    let present: HashSet<String> = api
        .list_devices(&out.application_id)
        .await?
        .into_iter()
        .map(|d| d.dev_eui)
        .collect();
    let all = devices(spec, keys);
    for device in all.iter().filter(|d| present.contains(&d.dev_eui)) {
        // Kept, with the fleet's keys: a fleet of another seed or key may have left others.
        api.put_device_keys(device).await?;
        out.devices_kept += 1;
    }
    for device in missing(&all, &present) {
        api.create_device(&out.application_id, &out.device_profile_id, device)
            .await
            .with_context(|| format!("provisioning meter {}", device.name))?;
        out.devices_created += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_devices_carry_the_keys_the_meters_join_with() {
        let spec = FleetSpec {
            meters: 3,
            ..FleetSpec::default()
        };
        let keys = FleetKeys::for_seed(spec.seed);
        let devices = devices(&spec, &keys);
        let meters = fleet::build(&spec, 0);
        assert_eq!(devices.len(), 3);
        for (d, m) in devices.iter().zip(&meters) {
            assert_eq!(d.dev_eui, m.dev_eui_hex());
            assert_eq!(d.app_key, hex(&keys.app_key(m.index)));
            assert_eq!(d.join_eui, "0000000000000000");
            assert_eq!(d.name, m.serial.to_string());
        }
        let present: HashSet<String> = [devices[1].dev_eui.clone()].into_iter().collect();
        let to_create: Vec<&str> = missing(&devices, &present)
            .iter()
            .map(|d| d.dev_eui.as_str())
            .collect();
        assert_eq!(
            to_create,
            [devices[0].dev_eui.as_str(), devices[2].dev_eui.as_str()]
        );
    }
}
