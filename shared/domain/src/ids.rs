//! Typed identifiers. Each is parsed once at the edge ("parse, don't validate"), so anything
//! holding one can rely on its shape: safe as a file name, a DynamoDB key and a URL segment.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A run id: a ULID, so ids sort by creation time and carry 80 random bits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    pub fn new(now_ms: u64) -> Self {
        RunId(ulid::Ulid::from_parts(now_ms, rand::random::<u128>()).to_string())
    }

    /// A run id derived from an idempotency scope, so a retried request that crashed half-way
    /// lands on the same run instead of creating a second one.
    /// Such ids do not sort by time.
    pub fn derived(seed: &[u8]) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(seed);
        let mut bits = [0u8; 16];
        bits.copy_from_slice(&digest[..16]);
        RunId(ulid::Ulid(u128::from_be_bytes(bits)).to_string())
    }

    pub fn parse(s: &str) -> Option<RunId> {
        ulid::Ulid::from_string(s)
            .ok()
            .map(|u| RunId(u.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RunId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        RunId::parse(&s).ok_or_else(|| format!("not a run id: {s:?}"))
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! slug_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// 1 to 64 characters of `a-z`, `A-Z`, `0-9`, `-`, `_` and `.`, not starting with `.`.
            pub fn parse(s: &str) -> Result<Self, String> {
                let ok = !s.is_empty()
                    && s.len() <= 64
                    && !s.starts_with('.')
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if ok {
                    Ok($name(s.to_owned()))
                } else {
                    Err(format!(
                        concat!("invalid ", $what, " {:?}: use 1-64 characters of letters, digits, '-', '_' or '.'"),
                        s
                    ))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                $name::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_newtype!(
    /// The name of a configured connector instance, e.g. `team-webhook`.
    ConnectorName,
    "connector name"
);
slug_newtype!(
    /// A configured project, e.g. `web`.
    ProjectName,
    "project name"
);
slug_newtype!(
    /// The configured id of an API key (never the key itself).
    KeyId,
    "API key id"
);

/// The value of an `Idempotency-Key` header: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("Idempotency-Key must be 1-255 visible ASCII characters".into());
        }
        Ok(IdempotencyKey(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_roundtrip_and_reject_garbage() {
        let id = RunId::new(1_700_000_000_000);
        assert_eq!(RunId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(RunId::parse("../etc/passwd"), None);
        assert_eq!(
            RunId::derived(b"k"),
            RunId::derived(b"k"),
            "derived ids are stable"
        );
        assert_ne!(RunId::derived(b"k"), RunId::derived(b"j"));
        let derived = RunId::derived(b"k");
        assert_eq!(RunId::parse(derived.as_str()), Some(derived));
    }

    #[test]
    fn slugs_refuse_path_tricks() {
        assert!(ConnectorName::parse("team-hook_1.v2").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(ConnectorName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert!(IdempotencyKey::parse("ci-123:attempt").is_ok());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }
}

/// The event id of `run`'s delivery to `connector`: the same on every retry (receivers
/// dedupe on it; it is `webhook-id`). Standard Webhooks signs `{id}.{timestamp}.{body}`, so
/// the id holds no `.`: a connector name's dots become `~` (a character names never hold,
/// so two names never share an id).
pub fn event_id(run: &RunId, connector: &ConnectorName) -> String {
    format!("evt_{run}_{}", connector.as_str().replace('.', "~"))
}

#[cfg(test)]
mod event_id_tests {
    use super::*;

    #[test]
    fn event_ids_hold_no_dot_and_stay_distinct() {
        let run = RunId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap();
        let id = |c: &str| event_id(&run, &ConnectorName::parse(c).unwrap());
        assert_eq!(id("hook"), "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV_hook");
        assert_eq!(
            id("team.alpha"),
            "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV_team~alpha"
        );
        assert!(!id("a.b.c").contains('.'));
        assert_ne!(id("a.b"), id("a-b"));
        assert_ne!(id("a.b"), id("a_b"));
    }
}

/// 16 hex digits of `s`'s SHA-256: a short stable name for something too long or too free
/// for a key (a branch name, a test's identity).
pub fn digest16(s: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..8])
}
