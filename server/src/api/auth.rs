//! API keys and roles.
//!
//! A key is `mh_` followed by 43 characters (32 random bytes, base64url). Only its SHA-256 is
//! stored. Requests are checked against an in-memory map of digests — a database lookup per
//! request would cap throughput — reloaded at once when this instance creates or revokes a key
//! and every few seconds otherwise, so that a key created or revoked by `meterhub keys` or by
//! another instance takes effect within [`REFRESH_INTERVAL`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::storage::api_keys::ApiKeyRow;
use crate::storage::{Result, Store};

/// How often keys are reloaded from the database.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// What a key may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Also: commands, alarms, inspections, schedules, quarantine replays.
    Operator,
    /// Also: install meters, manage keys.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role with this name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's id.
    pub key_id: Uuid,
    /// The key's name (recorded as who acknowledged an alarm, who recorded a visit).
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// A new key: its row and the secret, which exists only here.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The stored part.
    pub row: ApiKeyRow,
    /// The secret to give to the client, once.
    pub secret: String,
}

/// The SHA-256 of a secret, as stored.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Makes a key (not yet stored).
pub fn generate(name: &str, role: Role, now: DateTime<Utc>) -> NewKey {
    // Two v4 UUIDs are 244 bits from the operating system's random source.
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    let secret = format!(
        "mh_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    NewKey {
        row: ApiKeyRow {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            role: role.as_str().to_owned(),
            secret_sha256: digest(&secret).to_vec(),
            prefix: secret.chars().take(10).collect(),
            created_at: now,
            revoked_at: None,
        },
        secret,
    }
}

/// The keys that may call, by digest. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: Arc<RwLock<Ring>>,
}

/// The live keys, found by the digest of their secret (the API's bearer) or by their id (the
/// pages' session cookie, which carries no secret).
#[derive(Debug, Default)]
struct Ring {
    by_digest: HashMap<[u8; 32], Caller>,
    by_id: HashMap<Uuid, Caller>,
}

impl KeyRing {
    /// Reloads the keys that are not revoked.
    pub async fn reload(&self, store: &Store) -> Result<()> {
        let rows = store.api_keys().await?;
        let mut map = Ring::default();
        for row in rows.into_iter().filter(|r| r.revoked_at.is_none()) {
            let (Ok(d), Some(role)) = (
                <[u8; 32]>::try_from(row.secret_sha256.as_slice()),
                Role::parse(&row.role),
            ) else {
                continue;
            };
            let caller = Caller {
                key_id: row.id,
                name: row.name,
                role,
            };
            map.by_id.insert(row.id, caller.clone());
            map.by_digest.insert(d, caller);
        }
        match self.keys.write() {
            Ok(mut k) => *k = map,
            Err(p) => *p.into_inner() = map,
        }
        Ok(())
    }

    /// The caller presenting `secret`, if it is a live key.
    pub fn verify(&self, secret: &str) -> Option<Caller> {
        let d = digest(secret);
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.by_digest.get(&d).cloned()
    }

    /// The caller holding the key `id`, if it is live (not revoked, as of the last reload).
    pub fn by_id(&self, id: Uuid) -> Option<Caller> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.by_id.get(&id).cloned()
    }
}

/// Reloads `ring` every [`REFRESH_INTERVAL`] until `shutdown`.
pub async fn refresh(ring: KeyRing, store: Store, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = ring.reload(&store).await {
            tracing::warn!(error = %e, "cannot reload API keys; keeping the ones loaded");
        }
    }
}

/// The secret of an `Authorization: Bearer …` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_only_their_digest_is_kept() {
        let now = Utc::now();
        let a = generate("billing", Role::Viewer, now);
        let b = generate("billing", Role::Viewer, now);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), 46);
        assert_eq!(a.row.secret_sha256, digest(&a.secret).to_vec());
        assert!(
            !a.row
                .secret_sha256
                .windows(8)
                .any(|w| a.secret.as_bytes().starts_with(w))
        );
        assert!(a.secret.starts_with(&a.row.prefix));
    }

    #[test]
    fn roles_are_ordered_by_what_they_may_do() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn only_bearer_headers_carry_a_key() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
