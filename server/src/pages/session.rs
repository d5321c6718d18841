//! The signed-in session: a cookie naming the API key signed in with (its id, never its
//! secret), until when, and a random nonce, signed with HMAC-SHA256 under the installation's
//! session secret; and the CSRF token every form carries, derived from the signature.
//!
//! Where the secret lives: in the database (`installation_secrets`, created by the first
//! instance to start, [`crate::storage::Store::installation_secret`]), not in a setting. Every
//! instance of an installation already shares the database and nothing else, so they accept
//! each other's sessions with nothing to configure or distribute; a setting would need an
//! operator to generate a secret and copy it to each instance, and its default would be either
//! a constant anyone can read in this source (forgeable sessions) or a random value per process
//! (sessions lost on every restart and refused by the other instances). Whoever can read the
//! database could forge a session for a key id, but could as well read every reading and, with
//! write access, create keys: the secret adds no new exposure. Deleting its row and restarting
//! ends every session.
//!
//! Checked on every request, with nothing stored per session: the signature (a changed byte
//! is refused), the expiry (`[pages] session_hours` after sign-in, by the wall clock, not the
//! simulated one a demo runs on) and the key, looked up by id in the API's key ring, so that
//! revoking the key ends its sessions within the ring's refresh.
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends
//! it) and expires with the session. It is `Secure` only when the request came through a proxy
//! that says it was HTTPS (`X-Forwarded-Proto: https`): the server itself speaks plain HTTP and
//! cannot tell otherwise, and a `Secure` cookie set over plain HTTP (the demo on 127.0.0.1)
//! would never be sent back. A deployment behind a TLS proxy must let it set that header.

use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The cookie's name.
pub const COOKIE: &str = "meterhub_session";

/// The name of the installation secret that signs sessions.
pub const SECRET_NAME: &str = "pages_session";

/// Bytes of a session secret.
pub const SECRET_BYTES: usize = 32;

/// A new random session secret (for the first instance of an installation to store).
pub fn new_secret() -> [u8; SECRET_BYTES] {
    // Two v4 UUIDs: 244 random bits from the operating system.
    let mut out = [0u8; SECRET_BYTES];
    out[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    out[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    out
}

/// Issues and checks sessions under one secret. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    secret: std::sync::Arc<[u8]>,
    lifetime: TimeDelta,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// A signed-in browser, as its cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    key_id: Uuid,
    /// Unix seconds after which the session is over.
    expires: i64,
    /// 32 hex digits, new at every sign-in.
    nonce: String,
    /// HMAC-SHA256 of the above under the secret.
    mac: [u8; 32],
}

impl Sessions {
    /// Sessions signed with `secret` that last `lifetime` from sign-in.
    pub fn new(secret: &[u8], lifetime: TimeDelta) -> Sessions {
        Sessions {
            secret: secret.into(),
            lifetime,
        }
    }

    /// How long a session lasts.
    pub fn lifetime(&self) -> TimeDelta {
        self.lifetime
    }

    /// A new session for the key `key_id`, signed in at `now` (wall clock).
    pub fn start(&self, key_id: Uuid, now: DateTime<Utc>) -> Session {
        let expires = (now + self.lifetime).timestamp();
        let nonce = Uuid::new_v4().simple().to_string();
        let mac = self.sign(key_id, expires, &nonce);
        Session {
            key_id,
            expires,
            nonce,
            mac,
        }
    }

    fn sign(&self, key_id: Uuid, expires: i64, nonce: &str) -> [u8; 32] {
        let message = format!("meterhub-session\0{}.{expires}.{nonce}", key_id.simple());
        hmac_sha256(&self.secret, message.as_bytes())
    }

    /// The session a `Cookie` header carries, if there is one, signed under this secret and
    /// not expired at `now` (wall clock).
    pub fn from_cookies(&self, header: Option<&str>, now: DateTime<Utc>) -> Option<Session> {
        let s = parse(cookie_value(header)?)?;
        let want = self.sign(s.key_id, s.expires, &s.nonce);
        (same(&want, &s.mac) && now.timestamp() < s.expires).then_some(s)
    }

    /// The `Set-Cookie` value that keeps `session`; `secure` adds `Secure` (behind HTTPS).
    pub fn set_cookie(&self, session: &Session, secure: bool) -> String {
        format!(
            "{COOKIE}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
            session.value(),
            self.lifetime.num_seconds().max(0),
            if secure { "; Secure" } else { "" }
        )
    }
}

impl Session {
    /// The API key the session was signed in with.
    pub fn key_id(&self) -> Uuid {
        self.key_id
    }

    /// When it is over.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.expires, 0)
    }

    /// The cookie's value.
    pub fn value(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.key_id.simple(),
            self.expires,
            self.nonce,
            hex::encode(self.mac)
        )
    }

    /// The CSRF token of this session: a digest of its signature, which a page of another site
    /// can neither read (the cookie is `HttpOnly` and not sent to it) nor compute (it needs the
    /// secret), and from which the signature cannot be recovered.
    pub fn csrf(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"meterhub-csrf\0");
        h.update(self.mac);
        hex::encode(h.finalize())
    }

    /// Whether `token` is this session's CSRF token (compared in constant time).
    pub fn accepts(&self, token: &str) -> bool {
        same(self.csrf().as_bytes(), token.as_bytes())
    }
}

/// Our cookie's value in a `Cookie` header.
fn cookie_value(header: Option<&str>) -> Option<&str> {
    header?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v)
}

/// A cookie value's parts, if well formed (its signature not yet checked).
fn parse(value: &str) -> Option<Session> {
    let mut parts = value.split('.');
    let (key_id, expires, nonce, mac) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let hex_of = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !hex_of(key_id, 32)
        || !hex_of(nonce, 32)
        || !hex_of(mac, 64)
        || expires.is_empty()
        || expires.len() > 12
        || !expires.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some(Session {
        key_id: Uuid::parse_str(key_id).ok()?,
        expires: expires.parse().ok()?,
        nonce: nonce.to_owned(),
        mac: hex::decode(mac).ok()?.try_into().ok()?,
    })
}

/// Equal, compared in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 (RFC 2104) over the `sha2` the server already uses.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(&[7u8; 32], TimeDelta::hours(12))
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("a time")
            .with_timezone(&Utc)
    }

    fn header(s: &Session) -> String {
        format!("other=1; {COOKIE}={}; x=y", s.value())
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        let cases: [(&[u8], &[u8], &str); 3] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, data, want) in cases {
            assert_eq!(hex::encode(hmac_sha256(key, data)), want);
        }
    }

    #[test]
    fn a_session_survives_its_cookie_until_it_expires() {
        let ss = sessions();
        let id = Uuid::new_v4();
        let now = at("2026-03-01T08:00:00Z");
        let s = ss.start(id, now);
        let set = ss.set_cookie(&s, false);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.contains(&format!("Max-Age={}", 12 * 3600)));
        assert!(!set.contains("Secure"));
        assert!(ss.set_cookie(&s, true).ends_with("; Secure"));
        let back = ss.from_cookies(Some(&header(&s)), now + TimeDelta::hours(11));
        assert_eq!(back.as_ref(), Some(&s));
        assert_eq!(back.map(|b| b.key_id()), Some(id));
        assert_eq!(s.expires_at(), Some(at("2026-03-01T20:00:00Z")));
        assert_eq!(
            ss.from_cookies(Some(&header(&s)), at("2026-03-01T20:00:00Z")),
            None
        );
    }

    #[test]
    fn a_changed_cookie_or_another_secret_is_no_session() {
        let ss = sessions();
        let now = at("2026-03-01T08:00:00Z");
        let s = ss.start(Uuid::new_v4(), now);
        let value = s.value();
        let mut forged = Vec::new();
        // Each part changed by one character, or swapped for another key's id.
        for i in 0..value.len() {
            let b = value.as_bytes()[i];
            if b == b'.' {
                continue;
            }
            let mut v = value.clone().into_bytes();
            v[i] = if b == b'1' { b'2' } else { b'1' };
            forged.push(String::from_utf8(v).expect("ascii"));
        }
        let other = format!("{}{}", Uuid::new_v4().simple(), &value[32..]);
        forged.push(other);
        for f in &forged {
            let h = format!("{COOKIE}={f}");
            assert_eq!(ss.from_cookies(Some(&h), now), None, "{f}");
        }
        let elsewhere = Sessions::new(&[8u8; 32], TimeDelta::hours(12));
        assert_eq!(elsewhere.from_cookies(Some(&header(&s)), now), None);
    }

    #[test]
    fn malformed_cookies_are_no_session() {
        let ss = sessions();
        let now = at("2026-03-01T08:00:00Z");
        let good = ss.start(Uuid::new_v4(), now).value();
        for h in [
            String::new(),
            format!("{COOKIE}="),
            format!("{COOKIE}=abc"),
            format!("{COOKIE}={good}.x"),
            format!("{COOKIE}={}", good.to_uppercase()),
            format!("{COOKIE}={}", good.replacen('.', "..", 1)),
            format!("{COOKIE}={}", &good[..good.len() - 1]),
        ] {
            assert_eq!(ss.from_cookies(Some(&h), now), None, "{h:?}");
        }
        assert_eq!(ss.from_cookies(None, now), None);
    }

    #[test]
    fn the_cookie_carries_no_secret_of_the_key() {
        let ss = sessions();
        let key = crate::api::auth::generate("k", crate::api::auth::Role::Admin, Utc::now());
        let s = ss.start(key.row.id, Utc::now());
        let set = ss.set_cookie(&s, false);
        assert!(!set.contains(&key.secret));
        assert!(!set.contains(&key.secret[3..]));
        assert!(!set.contains(&hex::encode(&key.row.secret_sha256)));
    }

    #[test]
    fn the_token_is_the_sessions_own() {
        let ss = sessions();
        let now = Utc::now();
        let id = Uuid::new_v4();
        let a = ss.start(id, now);
        let b = ss.start(id, now);
        assert!(a.accepts(&a.csrf()));
        assert_ne!(a.csrf(), b.csrf(), "a new sign-in, a new token");
        assert!(!a.accepts(&b.csrf()));
        assert!(!a.accepts(""));
        assert!(!a.accepts(&a.csrf()[1..]));
        assert!(!a.csrf().contains(&hex::encode(a.mac)));
    }
}
