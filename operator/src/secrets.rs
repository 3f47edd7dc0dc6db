//! Generated Secrets: the JWT key pair and the dependency credentials.
//!
//! They are created when absent and never patched (Stackable's `random_secret_creation`):
//! rotating a signing key or a database password is a decision for a human, not a side
//! effect of a reconcile. Values never reach logs, events or status; only their digests are
//! used, for the pod-template hash.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};

use crate::build::labels;
use crate::config::{DependencyKind, DependencyMode, ValidatedConfig};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// An Ed25519 key pair as PEM.
pub struct KeyPairPem {
    /// PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    pub private_pem: String,
    /// SPKI (`-----BEGIN PUBLIC KEY-----`).
    pub public_pem: String,
}

/// Where generated secret values come from. Production uses [`SystemGenerator`]; tests pass a
/// deterministic one so golden files are stable.
pub trait SecretGenerator {
    /// A URL-safe password (it is placed into connection URIs).
    fn password(&mut self) -> String;
    /// A fresh Ed25519 key pair.
    fn ed25519(&mut self) -> KeyPairPem;
    /// A KRaft cluster id: 16 random bytes, base64url without padding.
    fn kafka_cluster_id(&mut self) -> String;
}

/// Secret values from the operating system's CSPRNG, through `ring`.
pub struct SystemGenerator {
    rng: SystemRandom,
}

impl Default for SystemGenerator {
    fn default() -> Self {
        Self {
            rng: SystemRandom::new(),
        }
    }
}

impl SystemGenerator {
    fn bytes<const N: usize>(&self) -> [u8; N] {
        let mut bytes = [0u8; N];
        self.rng
            .fill(&mut bytes)
            .expect("the system random number generator works");
        bytes
    }
}

impl SecretGenerator for SystemGenerator {
    fn password(&mut self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.bytes::<24>())
    }

    fn ed25519(&mut self) -> KeyPairPem {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&self.rng)
            .expect("the system random number generator works");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .expect("ring parses the key it just generated");
        key_pair_pem(pkcs8.as_ref(), pair.public_key().as_ref())
    }

    fn kafka_cluster_id(&mut self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.bytes::<16>())
    }
}

/// PEM-encode a PKCS#8 private key document and a raw 32-byte Ed25519 public key.
pub fn key_pair_pem(pkcs8_der: &[u8], public_key: &[u8]) -> KeyPairPem {
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(public_key);
    KeyPairPem {
        private_pem: pem("PRIVATE KEY", pkcs8_der),
        public_pem: pem("PUBLIC KEY", &spki),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The Secrets the operator generates for `cfg`, with fresh values from `generator`.
/// The reconciler creates only those that do not exist yet.
pub fn generated_secrets(
    cfg: &ValidatedConfig,
    generator: &mut dyn SecretGenerator,
) -> Vec<Secret> {
    let mut secrets = Vec::new();
    if cfg.jwt_generated {
        let pair = generator.ed25519();
        secrets.push(secret(
            cfg,
            &cfg.jwt_secret,
            "jwt",
            true,
            [
                ("private.pem".to_string(), pair.private_pem),
                ("public.pem".to_string(), pair.public_pem),
            ],
        ));
    }
    for dependency in &cfg.dependencies {
        let DependencyMode::Managed(managed) = &dependency.mode else {
            continue;
        };
        if !managed.credential.generated {
            continue;
        }
        let value = match dependency.kind {
            DependencyKind::Kafka => generator.kafka_cluster_id(),
            _ => generator.password(),
        };
        secrets.push(secret(
            cfg,
            &managed.credential.secret,
            dependency.kind.name(),
            // Not owned: the data volumes outlive the ChatDeployment (claims are retained),
            // and a ChatDeployment created again under the same name must find the password
            // that data was initialised with.
            false,
            [(managed.credential.key.clone(), value)],
        ));
    }
    secrets
}

fn secret<const N: usize>(
    cfg: &ValidatedConfig,
    name: &str,
    component: &str,
    owned: bool,
    data: [(String, String); N],
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(cfg.namespace.clone()),
            labels: Some(labels(cfg, component)),
            owner_references: owned.then(|| vec![cfg.owner.clone()]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from(data)),
        ..Default::default()
    }
}

/// Digests of Secret values by `(secret, key)`: what the build step hashes into pod templates,
/// so a changed value restarts the pods that read it without the value itself being kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretDigests(BTreeMap<(String, String), String>);

impl SecretDigests {
    /// Record the digests of every key of `secret` (both `data` and `stringData`).
    pub fn insert_secret(&mut self, secret: &Secret) {
        let name = secret.metadata.name.clone().unwrap_or_default();
        for (key, ByteString(value)) in secret.data.iter().flatten() {
            self.insert(&name, key, value);
        }
        for (key, value) in secret.string_data.iter().flatten() {
            self.insert(&name, key, value.as_bytes());
        }
    }

    /// Record the digest of one value.
    pub fn insert(&mut self, secret: &str, key: &str, value: &[u8]) {
        let digest = Sha256::digest(value);
        self.0.insert(
            (secret.into(), key.into()),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest),
        );
    }

    /// The digest of one key, if it exists.
    pub fn get(&self, secret: &str, key: &str) -> Option<&str> {
        self.0
            .get(&(secret.to_string(), key.to_string()))
            .map(String::as_str)
    }

    /// Whether any key of `secret` is known (i.e. the Secret exists).
    pub fn has_secret(&self, secret: &str) -> bool {
        self.0.keys().any(|(name, _)| name == secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ED25519};

    fn pem_body(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }

    #[test]
    fn generated_key_pair_is_pkcs8_and_spki_pem_that_verify_each_other() {
        let pair = SystemGenerator::default().ed25519();
        assert!(pair
            .private_pem
            .starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pair.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));

        let private = Ed25519KeyPair::from_pkcs8(&pem_body(&pair.private_pem)).unwrap();
        let spki = pem_body(&pair.public_pem);
        assert_eq!(spki.len(), 44);
        assert_eq!(spki[..12], ED25519_SPKI_PREFIX);
        let signature = private.sign(b"token");
        UnparsedPublicKey::new(&ED25519, &spki[12..])
            .verify(b"token", signature.as_ref())
            .unwrap();
    }

    #[test]
    fn generated_passwords_are_url_safe_and_distinct() {
        let mut generator = SystemGenerator::default();
        let (a, b) = (generator.password(), generator.password());
        assert_ne!(a, b);
        assert!(a.len() >= 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn kafka_cluster_id_is_22_base64url_characters() {
        assert_eq!(SystemGenerator::default().kafka_cluster_id().len(), 22);
    }
}
