//! The signed-in session: the API key in an `HttpOnly`, `SameSite=Strict` cookie beside a random
//! nonce, and the CSRF token every form carries, derived from both.
//!
//! Nothing is kept on the server: the key is checked against the key ring on every request (a
//! revoked key ends its sessions within the ring's refresh), and the token needs no store, so
//! several instances behind one address accept each other's sessions.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The cookie's name.
pub const COOKIE: &str = "meterhub_session";

/// A signed-in browser: its nonce (new at every sign-in) and its API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    nonce: String,
    key: String,
}

impl Session {
    /// A new session for `key`, with a fresh nonce.
    pub fn new(key: &str) -> Session {
        // Two v4 UUIDs: 244 random bits from the operating system.
        let nonce = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        Session {
            nonce,
            key: key.to_owned(),
        }
    }

    /// The session in a `Cookie` header, if one is there and well formed.
    pub fn from_cookies(header: Option<&str>) -> Option<Session> {
        let value = header?
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, v)| v)?;
        let (nonce, key) = value.split_once('.')?;
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        (nonce.len() == 64 && plain(nonce) && plain(key)).then(|| Session {
            nonce: nonce.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The API key the session signs in with.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `Set-Cookie` value that keeps this session; `secure` adds `Secure` (behind HTTPS).
    pub fn set_cookie(&self, secure: bool) -> String {
        format!(
            "{COOKIE}={}.{}; Path=/; HttpOnly; SameSite=Strict{}",
            self.nonce,
            self.key,
            if secure { "; Secure" } else { "" }
        )
    }

    /// The CSRF token of this session: a digest of nonce and key, which a page of another site
    /// can neither read nor compute.
    pub fn csrf(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"meterhub-csrf\0");
        h.update(self.nonce.as_bytes());
        h.update(b"\0");
        h.update(self.key.as_bytes());
        hex::encode(h.finalize())
    }

    /// Whether `token` is this session's CSRF token (compared in constant time).
    pub fn accepts(&self, token: &str) -> bool {
        let want = self.csrf();
        want.len() == token.len()
            && want
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "mh_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcd";

    #[test]
    fn a_session_survives_its_cookie() {
        let s = Session::new(KEY);
        let set = s.set_cookie(false);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(!set.contains("Secure"));
        let value = set.split(';').next().expect("pair");
        let back = Session::from_cookies(Some(&format!("other=1; {value}; x=y")));
        assert_eq!(back.as_ref(), Some(&s));
        assert_eq!(back.map(|b| b.key().to_owned()), Some(KEY.to_owned()));
        assert!(s.set_cookie(true).ends_with("; Secure"));
    }

    #[test]
    fn malformed_cookies_are_no_session() {
        for header in [
            "",
            "meterhub_session=",
            "meterhub_session=abc",
            "meterhub_session=short.mh_key",
            &format!("meterhub_session={}.", "a".repeat(64)),
            &format!("meterhub_session={}.mh key", "a".repeat(64)),
            &format!("meterhub_session={}.mh_k\"", "a".repeat(64)),
        ] {
            assert_eq!(Session::from_cookies(Some(header)), None, "{header:?}");
        }
        assert_eq!(Session::from_cookies(None), None);
    }

    #[test]
    fn the_token_is_the_sessions_own() {
        let a = Session::new(KEY);
        let b = Session::new(KEY);
        assert!(a.accepts(&a.csrf()));
        assert_ne!(a.csrf(), b.csrf(), "a new sign-in, a new token");
        assert!(!a.accepts(&b.csrf()));
        assert!(!a.accepts(""));
        assert!(!a.accepts(&a.csrf()[1..]));
        let other_key = Session {
            nonce: a.nonce.clone(),
            key: "mh_other".to_owned(),
        };
        assert!(!a.accepts(&other_key.csrf()));
    }
}
