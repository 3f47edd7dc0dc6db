//! Generated Secrets: the JWT key pair and the dependency credentials.
//!
//! They are created when absent and never patched (Stackable's `random_secret_creation`):
//! rotating a signing key or a database password is a decision for a human, not a side
//! effect of a reconcile. The one exception is the JWT key, rotated when a human asks for it
//! through the annotation `chat.scalablechat.dev/rotate-jwt-key` ([`maintain_jwt_keys`]).
//! Values never reach logs, events or status; only their digests are used, for the
//! pod-template hash, and key ids (hashes of public keys) in the status.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};

use crate::build::labels;
use crate::config::{DependencyKind, DependencyMode, ValidatedConfig};
use crate::crd::JwtKeyStatus;

/// Annotation on the generated JWT Secret: the keys of its `public.pem` bundle as JSON,
/// `[{kid, createdAt, retireAfter}]`, newest (the signing key) first.
pub const JWT_KEYS_ANNOTATION: &str = "chat.scalablechat.dev/jwt-keys";
/// Annotation on the generated JWT Secret: the value of the ChatDeployment's rotate-jwt-key
/// annotation it was last rotated for.
pub const JWT_ROTATED_FOR_ANNOTATION: &str = "chat.scalablechat.dev/rotated-for";

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
    now: DateTime<Utc>,
) -> Vec<Secret> {
    let mut secrets = Vec::new();
    if cfg.jwt_generated {
        let pair = generator.ed25519();
        let keys = vec![JwtKeyStatus {
            kid: key_id_of_pem(&pair.public_pem),
            created_at: Some(Time(now)),
            retire_after: None,
        }];
        let mut jwt = secret(
            cfg,
            &cfg.jwt_secret,
            "jwt",
            true,
            [
                ("private.pem".to_string(), pair.private_pem),
                ("public.pem".to_string(), pair.public_pem),
            ],
        );
        let annotations = jwt.metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert(JWT_KEYS_ANNOTATION.into(), keys_json(&keys));
        // A ChatDeployment created with the annotation already set gets no second key.
        if let Some(request) = &cfg.jwt_rotation {
            annotations.insert(JWT_ROTATED_FOR_ANNOTATION.into(), request.clone());
        }
        secrets.push(jwt);
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
    // The application users' passwords, after the administrators' (so those keep the values
    // they were generated with before application users existed, golden files included).
    for dependency in &cfg.dependencies {
        let DependencyMode::Managed(managed) = &dependency.mode else {
            continue;
        };
        let Some(app) = &managed.app_credential else {
            continue;
        };
        secrets.push(secret(
            cfg,
            &app.secret,
            dependency.kind.name(),
            // Owned: the dependency sets the application user's password from it each time
            // it starts, so a ChatDeployment created again gets a new one that works.
            true,
            [(app.key.clone(), generator.password())],
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

/// The key id the services give an Ed25519 public key (`chat_domain::tokens::key_id`): the
/// first 16 characters of the unpadded base64url SHA-256 of the raw 32-byte key. A block that
/// is not an Ed25519 SPKI key gets the same hash of its DER instead.
fn key_id_of_pem(block: &str) -> String {
    let body: String = block.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .unwrap_or_else(|_| block.as_bytes().to_vec());
    let raw = match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(raw) if raw.len() == 32 => raw,
        _ => &der[..],
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(raw))[..16].to_string()
}

/// The `PUBLIC KEY` PEM blocks of a bundle, each with its lines and a final newline.
fn pem_blocks(bundle: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    let mut blocks = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find(BEGIN) {
        let Some(length) = rest[start..].find(END) else {
            break;
        };
        let stop = start + length + END.len();
        blocks.push(format!("{}\n", &rest[start..stop]));
        rest = &rest[stop..];
    }
    blocks
}

fn keys_json(keys: &[JwtKeyStatus]) -> String {
    serde_json::to_string(keys).expect("key records serialise to JSON")
}

/// One key of a Secret as text, from `data` or `stringData`.
fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(value) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(value.clone());
    }
    let ByteString(bytes) = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.clone()).ok()
}

/// The keys of a JWT Secret's `public.pem` bundle, in bundle order, with what its
/// annotation records about them (keys it does not know get no dates).
pub fn jwt_keys(secret: &Secret) -> Vec<JwtKeyStatus> {
    bundle_keys(secret).into_iter().map(|(_, k)| k).collect()
}

fn bundle_keys(secret: &Secret) -> Vec<(String, JwtKeyStatus)> {
    let recorded: Vec<JwtKeyStatus> = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(JWT_KEYS_ANNOTATION))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    let bundle = secret_value(secret, "public.pem").unwrap_or_default();
    pem_blocks(&bundle)
        .into_iter()
        .map(|block| {
            let kid = key_id_of_pem(&block);
            let record = recorded
                .iter()
                .find(|r| r.kid == kid)
                .cloned()
                .unwrap_or(JwtKeyStatus {
                    kid,
                    created_at: None,
                    retire_after: None,
                });
            (block, record)
        })
        .collect()
}

/// What [`maintain_jwt_keys`] changed.
#[derive(Clone, Debug)]
pub struct JwtKeyUpdate {
    /// The Secret to write, still carrying the `resourceVersion` it was read with, so a
    /// concurrent change makes the write fail instead of being lost.
    pub secret: Secret,
    /// Key id of the new signing key, when the key was rotated.
    pub rotated: Option<String>,
    /// Key ids dropped from the bundle because their time was up.
    pub retired: Vec<String>,
}

/// Rotate and retire the keys of the generated JWT Secret; `None` when nothing changes.
///
/// `rotation` is the ChatDeployment's rotate-jwt-key annotation. When it differs from the
/// value the Secret was last rotated for, a new key pair is generated: its private key
/// replaces `private.pem` (auth signs with it), its public key joins the front of the
/// `public.pem` bundle, and the keys that were signing get `retireAfter = now + keep`, so
/// tokens they signed keep verifying until they expire. Keys past their `retireAfter` leave
/// the bundle.
pub fn maintain_jwt_keys(
    secret: &Secret,
    rotation: Option<&str>,
    generator: &mut dyn SecretGenerator,
    now: DateTime<Utc>,
    keep: Duration,
) -> Option<JwtKeyUpdate> {
    let mut private = secret_value(secret, "private.pem")?;
    let mut keys = bundle_keys(secret);
    let mut retired = Vec::new();
    keys.retain(|(_, key)| {
        let expired = key.retire_after.as_ref().is_some_and(|t| t.0 <= now);
        if expired {
            retired.push(key.kid.clone());
        }
        !expired
    });
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let request = rotation.filter(|r| {
        annotations
            .get(JWT_ROTATED_FOR_ANNOTATION)
            .map(String::as_str)
            != Some(*r)
    });
    let mut rotated = None;
    if request.is_some() {
        let pair = generator.ed25519();
        let kid = key_id_of_pem(&pair.public_pem);
        for (_, key) in keys.iter_mut().filter(|(_, k)| k.retire_after.is_none()) {
            key.retire_after = Some(Time(now + keep));
        }
        keys.insert(
            0,
            (
                pair.public_pem,
                JwtKeyStatus {
                    kid: kid.clone(),
                    created_at: Some(Time(now)),
                    retire_after: None,
                },
            ),
        );
        private = pair.private_pem;
        rotated = Some(kid);
    }
    if rotated.is_none() && retired.is_empty() {
        return None;
    }

    let mut updated = secret.clone();
    let mut data: BTreeMap<String, ByteString> = updated.data.take().unwrap_or_default();
    for (key, value) in updated.string_data.take().unwrap_or_default() {
        data.insert(key, ByteString(value.into_bytes()));
    }
    let bundle: String = keys.iter().map(|(block, _)| block.as_str()).collect();
    data.insert("public.pem".into(), ByteString(bundle.into_bytes()));
    data.insert("private.pem".into(), ByteString(private.into_bytes()));
    updated.data = Some(data);
    let records: Vec<JwtKeyStatus> = keys.into_iter().map(|(_, k)| k).collect();
    let annotations = updated
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    annotations.insert(JWT_KEYS_ANNOTATION.into(), keys_json(&records));
    if let Some(request) = request {
        annotations.insert(JWT_ROTATED_FOR_ANNOTATION.into(), request.into());
    }
    Some(JwtKeyUpdate {
        secret: updated,
        rotated,
        retired,
    })
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

    fn jwt_secret(generator: &mut SystemGenerator) -> Secret {
        let pair = generator.ed25519();
        Secret {
            string_data: Some(BTreeMap::from([
                ("private.pem".to_string(), pair.private_pem),
                ("public.pem".to_string(), pair.public_pem),
            ])),
            ..Default::default()
        }
    }

    fn at(hour: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2025, 1, 1, hour, 0, 0).unwrap()
    }

    #[test]
    fn rotation_signs_with_a_new_key_and_keeps_the_old_one_verifying_until_it_retires() {
        let mut generator = SystemGenerator::default();
        let original = jwt_secret(&mut generator);
        let old_kid = jwt_keys(&original)[0].kid.clone();
        let keep = Duration::hours(1);

        let rotated = maintain_jwt_keys(&original, Some("r1"), &mut generator, at(0), keep)
            .expect("a new request rotates");
        let new_kid = rotated.rotated.clone().unwrap();
        assert_ne!(new_kid, old_kid);
        let keys = jwt_keys(&rotated.secret);
        let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()]);
        assert_eq!(keys[0].retire_after, None);
        assert_eq!(keys[1].retire_after, Some(Time(at(1))));
        assert_ne!(
            secret_value(&rotated.secret, "private.pem"),
            secret_value(&original, "private.pem")
        );
        assert!(rotated.secret.string_data.is_none(), "written as data");

        // The same request again, before the old key's time: nothing to do.
        let same = maintain_jwt_keys(&rotated.secret, Some("r1"), &mut generator, at(0), keep);
        assert!(same.is_none());
        assert!(maintain_jwt_keys(&rotated.secret, None, &mut generator, at(0), keep).is_none());

        let retired = maintain_jwt_keys(&rotated.secret, Some("r1"), &mut generator, at(1), keep)
            .expect("the old key retires");
        assert_eq!(retired.retired, [old_kid]);
        assert_eq!(retired.rotated, None);
        let left: Vec<String> = jwt_keys(&retired.secret)
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(left, [new_kid]);
    }

    #[test]
    fn key_ids_are_the_ones_the_services_compute() {
        // The services' own code reads the generated keys: same key ids, signing and verifying.
        let mut generator = SystemGenerator::default();
        let (a, b) = (generator.ed25519(), generator.ed25519());
        let signer = chat_domain::tokens::SigningKey::from_pem(&a.private_pem).unwrap();
        assert_eq!(signer.kid(), key_id_of_pem(&a.public_pem));
        let bundle = format!("{}{}", a.public_pem, b.public_pem);
        let kids: Vec<String> = chat_domain::tokens::VerifyingKey::from_pem_bundle(&bundle)
            .unwrap()
            .iter()
            .map(|k| k.kid().to_string())
            .collect();
        assert_eq!(
            kids,
            [key_id_of_pem(&a.public_pem), key_id_of_pem(&b.public_pem)]
        );
    }

    #[test]
    fn a_bundle_of_several_keys_is_split_into_blocks() {
        let mut generator = SystemGenerator::default();
        let (a, b) = (
            generator.ed25519().public_pem,
            generator.ed25519().public_pem,
        );
        assert_eq!(pem_blocks(&format!("{a}{b}")), [a, b]);
    }

    #[test]
    fn kafka_cluster_id_is_22_base64url_characters() {
        assert_eq!(SystemGenerator::default().kafka_cluster_id().len(), 22);
    }
}
