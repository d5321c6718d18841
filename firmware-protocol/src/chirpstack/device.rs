//! The device description every integration event carries.

use std::collections::BTreeMap;
use std::string::String;

use serde::{Deserialize, Serialize};

use super::common::DeviceClass;

/// The device an event is about (`integration.DeviceInfo`).
///
/// Every field is always written, as ChirpStack does for the `integration` package.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DeviceInfo {
    /// Tenant id (UUID).
    pub tenant_id: String,
    /// Tenant name.
    pub tenant_name: String,
    /// Application id (UUID, lowercase with hyphens); the `application_id` of the topic.
    pub application_id: String,
    /// Application name.
    pub application_name: String,
    /// Device-profile id (UUID).
    pub device_profile_id: String,
    /// Device-profile name.
    pub device_profile_name: String,
    /// Device name.
    pub device_name: String,
    /// DevEUI, 16 lowercase hex digits; the `dev_eui` of the topic.
    pub dev_eui: String,
    /// The class the device currently operates in.
    pub device_class_enabled: DeviceClass,
    /// Application, device-profile and device tags merged, later ones winning (`txack`
    /// events carry only device-profile and device tags).
    pub tags: BTreeMap<String, String>,
}
