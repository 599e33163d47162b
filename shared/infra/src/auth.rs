//! API keys and tokens: generation, the stored hash, verification.
//!
//! A key reads `cak_{key_id}_{secret}`: the id (16 hex digits) finds the row, the secret (32
//! random bytes, base64url) proves possession. Only the SHA-256 of the secret is stored; a
//! secret of 256 random bits needs no slow hash. Tokens issued by `/credentials/basic` are 32
//! random bytes too, stored the same way.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use climate_domain::auth::{Scope, format_scopes};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::db::{ApiKeyRecord, Database, DbResult};

/// Prefix of every API key (so scanners and people recognise one).
pub const KEY_PREFIX: &str = "cak_";

/// Hex SHA-256 of `parts`, fed in order.
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    sha256_hex(&[secret.as_bytes()])
}

/// Whether `secret` hashes to `stored`, compared in constant time.
pub fn verify_secret(secret: &str, stored: &str) -> bool {
    let computed = hash_secret(secret);
    computed.len() == stored.len()
        && computed
            .bytes()
            .zip(stored.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Splits a presented key into id and secret; `None` when it is not shaped like a key.
pub fn parse_key(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (id_ok && secret.len() >= 32).then_some((id, secret))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A fresh random token (base64url, 43 characters).
pub fn new_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// Creates and stores a key; returns its record and the key itself, which exists nowhere else.
///
/// # Errors
/// When the database fails.
pub async fn create_key(
    db: &dyn Database,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DbResult<(ApiKeyRecord, String)> {
    let key_id: String = random_bytes::<8>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let secret = new_token();
    let record = ApiKeyRecord {
        key_id: key_id.clone(),
        name: name.to_owned(),
        scopes: format_scopes(scopes),
        secret_hash: hash_secret(&secret),
        created_at: now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    db.create_api_key(&record).await?;
    Ok((record, format!("{KEY_PREFIX}{key_id}_{secret}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_verify() {
        let secret = new_token();
        assert_eq!(secret.len(), 43);
        let key = format!("cak_0123456789abcdef_{secret}");
        assert_eq!(parse_key(&key), Some(("0123456789abcdef", secret.as_str())));
        let stored = hash_secret(&secret);
        assert_eq!(stored.len(), 64);
        assert!(verify_secret(&secret, &stored));
        assert!(!verify_secret(&new_token(), &stored));
        assert!(!verify_secret(&secret, "short"));
        assert_eq!(parse_key("cak_0123_abc"), None, "short id");
        assert_eq!(parse_key(&format!("xyz_0123456789abcdef_{secret}")), None);
        assert_eq!(parse_key("cak_0123456789abcdef_short"), None);
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
