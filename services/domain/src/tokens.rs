//! Access tokens: JWTs signed with Ed25519 (`EdDSA`), each naming its key with a `kid`.
//!
//! Only auth holds a [`SigningKey`]. Every other role verifies with public keys only, through a
//! [`TokenVerifier`]: keys come from `JWT_PUBLIC_KEY_FILE` or, when that is unset, from auth over
//! RPC ([`KeySource`]); an unknown `kid` triggers one refresh (rate-limited), so a rotated key is
//! picked up without a restart.

use crate::error::RequestError;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::error::Error;

/// Issuer and audience of access tokens.
pub const ISSUER: &str = "scalable-chat";
/// Prefix of an Ed25519 SubjectPublicKeyInfo in DER; the 32-byte key follows.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// The user's (normalised) email.
    pub email: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// Unique token id.
    pub jti: String,
    /// The session (refresh-token family) the token belongs to: once it is ended, its access
    /// tokens are refused before they expire. Absent in tokens issued by older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// A public verification key as served by auth (`auth.keys`), in JWK's OKP form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublicKeyJwk {
    /// Key type: `OKP`.
    pub kty: String,
    /// Curve: `Ed25519`.
    pub crv: String,
    /// Key id.
    pub kid: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// Algorithm: `EdDSA`.
    pub alg: String,
}

/// The key id of a public key: the first 16 characters of the base64url SHA-256 of its bytes.
pub fn key_id(public_key: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(public_key))[..16].to_string()
}

/// Decodes the base64 body of a PEM block with the given label.
fn pem_decode(pem: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .ok_or_else(|| format!("no {label} PEM block"))?
        + begin.len();
    let stop = pem[start..]
        .find(&end)
        .ok_or_else(|| format!("unterminated {label} PEM block"))?
        + start;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD
        .decode(body)
        .map_err(|_| format!("{label} PEM block is not valid base64"))
}

fn pem_encode(der: &[u8], label: &str) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The private key that signs access tokens. Held only by auth.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public: Vec<u8>,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, Error> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| Error::internal("cannot generate an Ed25519 key"))?;
        Self::from_pkcs8_der(pkcs8.as_ref())
    }

    /// A key from PKCS#8 DER bytes.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, Error> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| Error::validation("not an Ed25519 PKCS#8 private key"))?;
        let public = pair.public_key().as_ref().to_vec();
        Ok(SigningKey {
            kid: key_id(&public),
            encoding: EncodingKey::from_ed_der(der),
            public,
            pkcs8: der.to_vec(),
        })
    }

    /// A key from a PKCS#8 PEM document (`-----BEGIN PRIVATE KEY-----`), as `openssl genpkey
    /// -algorithm ed25519` writes it.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let der = pem_decode(pem, "PRIVATE KEY").map_err(Error::validation)?;
        Self::from_pkcs8_der(&der)
    }

    /// The key as PKCS#8 DER (to store a generated development key).
    pub fn to_pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key id placed in token headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            kid: self.kid.clone(),
            public: self.public.clone(),
        }
    }

    /// Signs `claims` as a compact JWT with `alg = EdDSA` and this key's `kid`.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, Error> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(Error::internal)
    }
}

/// A public key that verifies access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    kid: String,
    public: Vec<u8>,
}

impl VerifyingKey {
    /// Every key in a PEM document holding one or more `PUBLIC KEY` blocks (SPKI, Ed25519).
    pub fn from_pem_bundle(pem: &str) -> Result<Vec<Self>, Error> {
        let mut keys = Vec::new();
        for block in pem
            .split_inclusive("-----END PUBLIC KEY-----")
            .filter(|b| b.contains("BEGIN PUBLIC KEY"))
        {
            let der = pem_decode(block, "PUBLIC KEY").map_err(Error::validation)?;
            let raw = der
                .strip_prefix(&SPKI_ED25519_PREFIX)
                .filter(|raw| raw.len() == 32)
                .ok_or_else(|| {
                    Error::validation("public key is not an Ed25519 SubjectPublicKeyInfo")
                })?;
            keys.push(VerifyingKey {
                kid: key_id(raw),
                public: raw.to_vec(),
            });
        }
        if keys.is_empty() {
            return Err(Error::validation("no PUBLIC KEY block found"));
        }
        Ok(keys)
    }

    /// The key as an SPKI PEM document.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&self.public);
        pem_encode(&der, "PUBLIC KEY")
    }

    /// The key as a JWK.
    pub fn to_jwk(&self) -> PublicKeyJwk {
        PublicKeyJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            kid: self.kid.clone(),
            x: URL_SAFE_NO_PAD.encode(&self.public),
            alg: "EdDSA".into(),
        }
    }

    /// A key from a JWK served by auth; the `kid` is recomputed, never trusted.
    pub fn from_jwk(jwk: &PublicKeyJwk) -> Result<Self, Error> {
        let raw = URL_SAFE_NO_PAD
            .decode(&jwk.x)
            .map_err(|_| Error::validation("bad JWK x"))?;
        if jwk.kty != "OKP" || jwk.crv != "Ed25519" || raw.len() != 32 {
            return Err(Error::validation("JWK is not an Ed25519 key"));
        }
        Ok(VerifyingKey {
            kid: key_id(&raw),
            public: raw,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// The public keys in `JWT_PUBLIC_KEY_FILE`, if it is set.
pub fn public_keys_from_file(path: Option<&std::path::Path>) -> Result<Vec<VerifyingKey>, String> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read_to_string(path)
        .map_err(|e| format!("JWT_PUBLIC_KEY_FILE: cannot read the file: {e}"))?;
    VerifyingKey::from_pem_bundle(&pem).map_err(|e| format!("JWT_PUBLIC_KEY_FILE: {}", e.message))
}

/// Where a verifier fetches public keys it does not know yet (auth, over RPC).
#[async_trait::async_trait]
pub trait KeySource: Send + Sync {
    async fn fetch(&self) -> Result<Vec<PublicKeyJwk>, Error>;
}

/// Verifies access tokens with public keys.
pub struct TokenVerifier {
    keys: RwLock<HashMap<String, DecodingKey>>,
    source: Option<Arc<dyn KeySource>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    validation: Validation,
}

/// Unknown `kid`s trigger at most one key fetch per this interval, so garbage tokens cannot turn
/// into a flood of RPC calls.
const REFETCH_INTERVAL: Duration = Duration::from_secs(5);

impl TokenVerifier {
    /// A verifier with fixed keys and, optionally, a source for keys it does not know.
    pub fn new(keys: Vec<VerifyingKey>, source: Option<Arc<dyn KeySource>>) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let verifier = TokenVerifier {
            keys: RwLock::new(HashMap::new()),
            source,
            last_fetch: tokio::sync::Mutex::new(None),
            validation,
        };
        verifier.add_keys(keys);
        verifier
    }

    fn add_keys(&self, keys: Vec<VerifyingKey>) {
        let mut map = self.keys.write().expect("key map poisoned");
        for key in keys {
            map.insert(key.kid.clone(), DecodingKey::from_ed_der(&key.public));
        }
    }

    fn lookup(&self, kid: &str) -> Option<DecodingKey> {
        self.keys
            .read()
            .expect("key map poisoned")
            .get(kid)
            .cloned()
    }

    /// Checks signature, algorithm, issuer, audience and expiry; any failure is `unauthorized`
    /// with a message that does not help an attacker.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, Error> {
        let invalid = || Error::from(RequestError::InvalidToken);
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid());
        }
        let kid = header.kid.ok_or_else(invalid)?;
        let key = match self.lookup(&kid) {
            Some(key) => key,
            None => {
                self.refresh().await;
                self.lookup(&kid).ok_or_else(invalid)?
            }
        };
        jsonwebtoken::decode::<AccessClaims>(token, &key, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| invalid())
    }

    async fn refresh(&self) {
        let Some(source) = &self.source else { return };
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFETCH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        match source.fetch().await {
            Ok(jwks) => self.add_keys(
                jwks.iter()
                    .filter_map(|j| VerifyingKey::from_jwk(j).ok())
                    .collect(),
            ),
            Err(e) => tracing::warn!(error = %e, "could not fetch token verification keys"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_offset: i64) -> AccessClaims {
        let now = chrono::Utc::now().timestamp();
        AccessClaims {
            sub: "u1".into(),
            email: "a@b.c".into(),
            iat: now,
            exp: now + exp_offset,
            iss: ISSUER.into(),
            aud: ISSUER.into(),
            jti: "j".into(),
            sid: None,
        }
    }

    #[tokio::test]
    async fn a_signed_token_verifies_with_the_public_key_only() {
        let key = SigningKey::generate().unwrap();
        let pem = key.verifying_key().to_pem();
        let verifier = TokenVerifier::new(VerifyingKey::from_pem_bundle(&pem).unwrap(), None);
        let token = key.sign(&claims(60)).unwrap();
        assert_eq!(verifier.verify(&token).await.unwrap().sub, "u1");
    }

    #[tokio::test]
    async fn expired_tampered_and_foreign_tokens_are_rejected() {
        let key = SigningKey::generate().unwrap();
        let verifier = TokenVerifier::new(vec![key.verifying_key()], None);
        assert!(verifier
            .verify(&key.sign(&claims(-60)).unwrap())
            .await
            .is_err());

        let token = key.sign(&claims(60)).unwrap();
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
        payload[10] ^= 1;
        parts[1] = URL_SAFE_NO_PAD.encode(payload);
        assert!(verifier.verify(&parts.join(".")).await.is_err());

        let other = SigningKey::generate().unwrap();
        assert!(verifier
            .verify(&other.sign(&claims(60)).unwrap())
            .await
            .is_err());
        assert!(verifier.verify("not-a-token").await.is_err());
    }

    #[test]
    fn pem_and_jwk_round_trip_keep_the_key_id() {
        let key = SigningKey::generate().unwrap();
        let vk = key.verifying_key();
        assert_eq!(
            VerifyingKey::from_pem_bundle(&vk.to_pem()).unwrap(),
            vec![vk.clone()]
        );
        assert_eq!(VerifyingKey::from_jwk(&vk.to_jwk()).unwrap(), vk);
        let again = SigningKey::from_pkcs8_der(key.to_pkcs8_der()).unwrap();
        assert_eq!(again.kid(), key.kid());
    }

    #[test]
    fn an_openssl_private_key_pem_is_accepted() {
        // `openssl genpkey -algorithm ed25519` output (a test key, used nowhere else).
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKIw5Wz5KTVGUdDhdnwfLzbq1oo1rQk0FbkGqEDwUh0L\n-----END PRIVATE KEY-----\n";
        let key = SigningKey::from_pem(pem).unwrap();
        assert_eq!(key.kid().len(), 16);
    }
}
