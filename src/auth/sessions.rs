//! Dashboard sessions (`/ui`): a random token in an HttpOnly, SameSite=Strict
//! cookie, mapped here to "admin" with its CSRF token. The admin key itself is
//! never stored in the cookie; the table keeps only SHA-256 digests of the
//! session tokens, and each session remembers the digest of the admin key it
//! was opened with, so changing (or removing) `server.admin_key` by a reload
//! ends every session at once.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// How long a session lasts after login.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// Sessions kept at most; the oldest go first beyond it.
const MAX_SESSIONS: usize = 256;

struct Session {
    csrf: String,
    /// SHA-256 of the admin key the session was opened with.
    admin_key: [u8; 32],
    created_ms: i64,
}

/// The server-side session table.
#[derive(Default)]
pub struct UiSessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

/// A newly opened session: the cookie value and the CSRF token.
pub struct NewSession {
    pub token: String,
    pub csrf: String,
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

fn random_hex() -> Result<String, String> {
    let mut buf = [0u8; 32];
    getrandom::getrandom(&mut buf).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(hex::encode(buf))
}

impl UiSessions {
    /// Opens a session for someone who presented `admin_key` (already checked).
    pub fn open(&self, admin_key: &str, now_ms: i64) -> Result<NewSession, String> {
        let token = random_hex()?;
        let csrf = random_hex()?;
        let mut map = self
            .map
            .lock()
            .map_err(|_| "session table poisoned".to_string())?;
        map.retain(|_, s| now_ms - s.created_ms < SESSION_TTL_MS);
        while map.len() >= MAX_SESSIONS {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created_ms).map(|(k, _)| *k) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            digest(token.as_bytes()),
            Session {
                csrf: csrf.clone(),
                admin_key: digest(admin_key.as_bytes()),
                created_ms: now_ms,
            },
        );
        Ok(NewSession { token, csrf })
    }

    /// The CSRF token of a live session `token` opened with the current
    /// `admin_key`; None for an unknown, expired or outdated session.
    pub fn csrf(&self, token: &str, admin_key: &str, now_ms: i64) -> Option<String> {
        let mut map = self.map.lock().ok()?;
        let k = digest(token.as_bytes());
        let s = map.get(&k)?;
        let fresh = now_ms - s.created_ms < SESSION_TTL_MS;
        if !fresh || s.admin_key != digest(admin_key.as_bytes()) {
            map.remove(&k);
            return None;
        }
        Some(s.csrf.clone())
    }

    /// Ends the session `token` (logout).
    pub fn close(&self, token: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&digest(token.as_bytes()));
        }
    }

    /// Open sessions (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_lifecycle() {
        let s = UiSessions::default();
        let a = s.open("k1", 1000).expect("open");
        assert_eq!(a.token.len(), 64);
        assert_ne!(a.token, a.csrf);
        assert!(!a.token.contains("k1"));
        assert_eq!(s.csrf(&a.token, "k1", 2000).as_deref(), Some(a.csrf.as_str()));
        assert_eq!(s.csrf("nope", "k1", 2000), None);
        // Another admin key (a reload changed it): the session is gone.
        assert_eq!(s.csrf(&a.token, "k2", 2000), None);
        assert_eq!(s.csrf(&a.token, "k1", 2000), None);
        let b = s.open("k1", 1000).expect("open");
        assert_eq!(s.csrf(&b.token, "k1", 1000 + SESSION_TTL_MS), None, "expired");
        let c = s.open("k1", 1000).expect("open");
        s.close(&c.token);
        assert_eq!(s.csrf(&c.token, "k1", 1001), None);
    }

    #[test]
    fn table_is_bounded() {
        let s = UiSessions::default();
        let first = s.open("k", 0).expect("open");
        for i in 1..=(MAX_SESSIONS as i64) {
            s.open("k", i).expect("open");
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert_eq!(s.csrf(&first.token, "k", 10_000), None, "the oldest went first");
    }
}
