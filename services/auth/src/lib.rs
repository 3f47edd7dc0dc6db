//! The auth role: accounts, passwords and tokens (seed §Auth Service).
//!
//! - Passwords are hashed with argon2id (cost from `ARGON2_*`, default m=19 MiB, t=2, p=1, the
//!   OWASP recommendation), on the blocking pool so hashing never stalls the RPC consumers.
//! - Access tokens are short-lived Ed25519 JWTs with a `kid`; only this role holds the private key.
//! - Refresh tokens are 256-bit random strings, stored as SHA-256 hashes, rotated on every use.
//!   Every token descending from one login forms a family; presenting a spent token revokes the
//!   whole family (the thief and the victim both have to log in again).
//! - Login failures say the same thing whether or not the email exists, and take the same time:
//!   an unknown email is checked against a dummy hash.
//! - Login attempts are rate-limited per email and per client address.

use chat_ports::startup::StartupError;
use std::sync::Arc;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chat_domain::config::{Argon2Params, Config};
use chat_domain::contracts::assets::AssetGrant;
use chat_domain::contracts::auth::*;
use chat_domain::contracts::Page;
use chat_domain::tokens::{
    AccessClaims, PublicKeyJwk, SigningKey, TokenVerifier, VerifyingKey, ISSUER,
};
use chat_domain::values::{check_new_password, Email, PageRequest, PersonName};
use chat_domain::Error;
use chat_ports::clients::AssetsClient;
use chat_ports::rpc::RpcServer;
use chat_ports::store::{
    NewUser, RateLimiter, RefreshTokenRecord, RefreshTokenStore, RefreshUse, Revocations,
    SigningKeyStore, UserRecord, UserStore,
};
use chrono::Utc;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Token lifetimes and login limits.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub access_ttl: std::time::Duration,
    pub refresh_ttl: std::time::Duration,
    pub argon2: Argon2Params,
    pub login_max_per_email: u32,
    pub login_max_per_address: u32,
    pub login_window: std::time::Duration,
}

impl From<&Config> for AuthSettings {
    fn from(c: &Config) -> Self {
        AuthSettings {
            access_ttl: c.access_token_ttl,
            refresh_ttl: c.refresh_token_ttl,
            argon2: c.argon2,
            login_max_per_email: c.login_max_per_email,
            login_max_per_address: c.login_max_per_address,
            login_window: c.login_window,
        }
    }
}

/// The stores auth works on.
pub struct AuthStores {
    pub users: Arc<dyn UserStore>,
    pub refresh_tokens: Arc<dyn RefreshTokenStore>,
    pub limiter: Arc<dyn RateLimiter>,
    /// Sessions ended before their access tokens expire.
    pub revocations: Arc<dyn Revocations>,
    /// The stored files, through their owner (profile pictures).
    pub assets: AssetsClient,
}

/// The auth service.
pub struct AuthService {
    stores: AuthStores,
    signer: SigningKey,
    /// Keys this role also accepts (the signer's, plus any from `JWT_PUBLIC_KEY_FILE`, such as a
    /// key being rotated out).
    published: Vec<VerifyingKey>,
    verifier: TokenVerifier,
    hasher: Argon2<'static>,
    dummy_hash: String,
    settings: AuthSettings,
}

fn invalid_credentials() -> Error {
    AuthError::InvalidCredentials.into()
}

fn invalid_refresh() -> Error {
    AuthError::InvalidRefreshToken.into()
}

/// SHA-256 hex of a refresh token: what the store keeps.
fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

impl AuthService {
    /// Builds the service. `extra_keys` are further public keys to publish and accept.
    pub fn new(
        stores: AuthStores,
        signer: SigningKey,
        extra_keys: Vec<VerifyingKey>,
        settings: AuthSettings,
    ) -> Result<Self, Error> {
        let params = Params::new(
            settings.argon2.memory_kib,
            settings.argon2.iterations,
            settings.argon2.parallelism,
            None,
        )
        .map_err(|e| Error::internal(format!("invalid argon2 parameters: {e}")))?;
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = hasher
            .hash_password(
                b"dummy password for timing",
                &SaltString::generate(&mut OsRng),
            )
            .map_err(Error::internal)?
            .to_string();
        let mut published = vec![signer.verifying_key()];
        published.extend(extra_keys.into_iter().filter(|k| k.kid() != signer.kid()));
        let verifier = TokenVerifier::new(published.clone(), None);
        Ok(AuthService {
            stores,
            signer,
            published,
            verifier,
            hasher,
            dummy_hash,
            settings,
        })
    }

    async fn hash_password(&self, password: String) -> Result<String, Error> {
        let hasher = self.hasher.clone();
        tokio::task::spawn_blocking(move || {
            hasher
                .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
                .map(|h| h.to_string())
                .map_err(Error::internal)
        })
        .await
        .map_err(Error::internal)?
    }

    async fn password_matches(&self, password: String, hash: String) -> Result<bool, Error> {
        let hasher = self.hasher.clone();
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(Error::internal)?;
            Ok(hasher.verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .map_err(Error::internal)?
    }

    /// Creates an account and starts a session.
    pub async fn register(&self, body: RegisterBody) -> Result<AuthSession, Error> {
        let first_name = PersonName::parse("firstName", &body.first_name)?.into_inner();
        let last_name = PersonName::parse("lastName", &body.last_name)?.into_inner();
        let email = Email::parse(&body.email)?;
        check_new_password(&body.password)?;
        let password_hash = self.hash_password(body.password).await?;
        let user = self
            .stores
            .users
            .insert(NewUser {
                first_name,
                last_name,
                email,
                password_hash,
            })
            .await?;
        tracing::info!(user_id = %user.id, "account registered");
        self.start_session(&user, None).await
    }

    /// Checks credentials and starts a session.
    pub async fn login(&self, request: LoginRequest) -> Result<AuthSession, Error> {
        let email = Email::parse(&request.email);
        let email_key = match &email {
            Ok(e) => e.as_str().to_string(),
            Err(_) => request
                .email
                .trim()
                .to_lowercase()
                .chars()
                .take(254)
                .collect(),
        };
        self.limit(
            &format!("login:email:{email_key}"),
            self.settings.login_max_per_email,
        )
        .await?;
        if let Some(address) = &request.client_address {
            self.limit(
                &format!("login:address:{address}"),
                self.settings.login_max_per_address,
            )
            .await?;
        }
        let user = match &email {
            Ok(email) => self.stores.users.by_email(email).await?,
            Err(_) => None,
        };
        // Unknown emails cost the same hash check as known ones.
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let matches = self.password_matches(request.password, hash).await?;
        match user {
            Some(user) if matches => self.start_session(&user, None).await,
            _ => Err(invalid_credentials()),
        }
    }

    async fn limit(&self, key: &str, max: u32) -> Result<(), Error> {
        match self
            .stores
            .limiter
            .hit(key, max, self.settings.login_window)
            .await?
        {
            None => Ok(()),
            Some(retry_after) => {
                tracing::warn!(limit = max, "login rate limit reached");
                Err(Error::rate_limited(retry_after))
            }
        }
    }

    /// Exchanges a refresh token for a new pair. A spent token revokes its family.
    pub async fn refresh(&self, body: RefreshBody) -> Result<AuthSession, Error> {
        match self
            .stores
            .refresh_tokens
            .spend(&token_hash(&body.refresh_token))
            .await?
        {
            RefreshUse::Fresh(record) => {
                if record.expires_at <= Utc::now() {
                    return Err(invalid_refresh());
                }
                let user = self
                    .stores
                    .users
                    .by_id(&record.user_id)
                    .await?
                    .ok_or_else(invalid_refresh)?;
                self.start_session(&user, Some(record.family_id)).await
            }
            RefreshUse::Reused(record) => {
                let revoked = self
                    .stores
                    .refresh_tokens
                    .revoke_family(&record.family_id)
                    .await?;
                self.end_session(&record.family_id).await?;
                tracing::warn!(user_id = %record.user_id, family_id = %record.family_id, revoked,
                    "spent refresh token presented again; its family is revoked");
                Err(invalid_refresh())
            }
            RefreshUse::Unknown => Err(invalid_refresh()),
        }
    }

    /// Ends the session the refresh token belongs to. Unknown tokens are ignored (idempotent).
    pub async fn logout(&self, body: RefreshBody) -> Result<(), Error> {
        let record = match self
            .stores
            .refresh_tokens
            .spend(&token_hash(&body.refresh_token))
            .await?
        {
            RefreshUse::Fresh(r) | RefreshUse::Reused(r) => r,
            RefreshUse::Unknown => return Ok(()),
        };
        self.stores
            .refresh_tokens
            .revoke_family(&record.family_id)
            .await?;
        self.end_session(&record.family_id).await?;
        tracing::info!(user_id = %record.user_id, "logged out");
        Ok(())
    }

    /// The profile of `user_id`.
    pub async fn user(&self, request: UserRef) -> Result<UserView, Error> {
        self.stores
            .users
            .by_id(&request.user_id)
            .await?
            .map(|u| u.view())
            .ok_or_else(|| AuthError::UserNotFound.into())
    }

    /// `PATCH /users/me`: names, and a profile picture that is an image the caller uploaded
    /// (which every signed-in user may then read) or a web address.
    pub async fn update_me(&self, request: UpdateUser) -> Result<UserView, Error> {
        let body = request.body;
        if body.first_name.is_none() && body.last_name.is_none() && body.profile_url.is_none() {
            return Err(AuthError::NothingToChange.into());
        }
        let first_name = body
            .first_name
            .map(|n| PersonName::parse("firstName", &n).map(PersonName::into_inner))
            .transpose()?;
        let last_name = body
            .last_name
            .map(|n| PersonName::parse("lastName", &n).map(PersonName::into_inner))
            .transpose()?;
        if let Some(Some(url)) = &body.profile_url {
            let assets = &self.stores.assets;
            match assets.picture("profileUrl", &request.user_id, url).await? {
                Some(asset) if !asset.public => {
                    let asset_id = asset.id;
                    assets.grant(AssetGrant::Everyone { asset_id }).await?
                }
                _ => {}
            }
        }
        self.stores
            .users
            .update_profile(&request.user_id, first_name, last_name, body.profile_url)
            .await?
            .map(|u| u.view())
            .ok_or_else(|| AuthError::UserNotFound.into())
    }

    /// Records when a user was last online (from the chat role).
    pub async fn last_seen(&self, request: LastSeen) -> Result<(), Error> {
        self.stores
            .users
            .set_last_seen(&request.user_id, request.at)
            .await
    }

    /// When each of the named users was last online (at most [`MAX_LAST_SEEN_IDS`]).
    pub async fn last_seen_of(&self, request: UsersRef) -> Result<Vec<LastSeenView>, Error> {
        let ids = &request.user_ids[..request.user_ids.len().min(MAX_LAST_SEEN_IDS)];
        let seen = self.stores.users.last_seen(ids).await?;
        Ok(seen
            .into_iter()
            .map(|(user_id, last_seen_at)| LastSeenView {
                user_id,
                last_seen_at,
            })
            .collect())
    }

    /// A page of users.
    pub async fn list_users(&self, query: ListUsersQuery) -> Result<Page<UserView>, Error> {
        let page = PageRequest::parse(query.page, query.limit)?;
        if query
            .search
            .as_ref()
            .is_some_and(|s| s.chars().count() > 100)
        {
            return Err(AuthError::SearchTooLong.into());
        }
        let search = query
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let (users, total) = self.stores.users.list(search, page).await?;
        Ok(Page {
            data: users.iter().map(UserRecord::view).collect(),
            page: page.page,
            limit: page.limit,
            total,
        })
    }

    /// Verifies an access token.
    pub async fn verify(&self, request: VerifyRequest) -> Result<VerifiedUser, Error> {
        let claims = self.verifier.verify(&request.token).await?;
        Ok(VerifiedUser {
            user_id: claims.sub,
            email: claims.email,
        })
    }

    /// Ends a session: its access tokens are refused from now on, not only once they expire.
    async fn end_session(&self, family_id: &str) -> Result<(), Error> {
        self.stores
            .revocations
            .revoke(family_id, self.settings.access_ttl)
            .await
    }

    /// The public keys that verify access tokens (`auth.keys`).
    pub async fn keys(&self, _: ()) -> Result<Vec<PublicKeyJwk>, Error> {
        Ok(self.published.iter().map(VerifyingKey::to_jwk).collect())
    }

    async fn start_session(
        &self,
        user: &UserRecord,
        family: Option<String>,
    ) -> Result<AuthSession, Error> {
        let now = Utc::now();
        let access_ttl = self.settings.access_ttl.as_secs();
        let refresh_ttl = self.settings.refresh_ttl.as_secs();
        let family = family.unwrap_or_else(|| random_token(16));
        let claims = AccessClaims {
            sub: user.id.clone(),
            email: user.email.clone(),
            iat: now.timestamp(),
            exp: now.timestamp() + access_ttl as i64,
            iss: ISSUER.into(),
            aud: ISSUER.into(),
            jti: random_token(12),
            sid: Some(family.clone()),
        };
        let access_token = self.signer.sign(&claims)?;
        let refresh_token = random_token(32);
        self.stores
            .refresh_tokens
            .insert(RefreshTokenRecord {
                token_hash: token_hash(&refresh_token),
                family_id: family,
                user_id: user.id.clone(),
                created_at: now,
                expires_at: now + chrono::Duration::seconds(refresh_ttl as i64),
            })
            .await?;
        Ok(AuthSession {
            user: user.view(),
            tokens: TokenPair {
                access_token,
                refresh_token,
                token_type: "Bearer".into(),
                expires_in: access_ttl,
                refresh_expires_in: refresh_ttl,
            },
        })
    }
}

/// Loads the signing key: from `JWT_PRIVATE_KEY_FILE`, or else the development key shared
/// through `keys` (generated on first start). Logs loudly when the development key is used.
pub async fn load_signing_key(
    config: &Config,
    keys: &dyn SigningKeyStore,
) -> Result<SigningKey, StartupError> {
    if let Some(path) = &config.jwt_private_key_file {
        let invalid = |why: String| StartupError::InvalidSetting {
            variable: "JWT_PRIVATE_KEY_FILE",
            why,
        };
        let pem = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("cannot read the file: {e}")))?;
        let key = SigningKey::from_pem(&pem).map_err(|e| invalid(e.message))?;
        tracing::info!(kid = %key.kid(), "signing access tokens with the configured key");
        return Ok(key);
    }
    let step = StartupError::step("the development signing key");
    let candidate = SigningKey::generate().map_err(step)?;
    let stored = keys
        .development_key(candidate.to_pkcs8_der())
        .await
        .map_err(step)?;
    let key = SigningKey::from_pkcs8_der(&stored).map_err(step)?;
    tracing::warn!(kid = %key.kid(),
        "DEVELOPMENT SIGNING KEY IN USE: JWT_PRIVATE_KEY_FILE is not set, so access tokens are signed with a key \
         generated once and stored in the database. Never run production like this; the operator mounts a real key.");
    Ok(key)
}

/// Registers every auth pattern on `server`.
pub fn rpc_handlers(service: Arc<AuthService>, server: RpcServer) -> RpcServer {
    use chat_ports::rpc_bind;
    let server = rpc_bind!(server, service, UserRegister, register);
    let server = rpc_bind!(server, service, UserLogin, login);
    let server = rpc_bind!(server, service, TokenRefresh, refresh);
    let server = rpc_bind!(server, service, UserVerify, verify);
    let server = rpc_bind!(server, service, UserLogout, logout);
    let server = rpc_bind!(server, service, UserMe, user);
    let server = rpc_bind!(server, service, UserUpdate, update_me);
    let server = rpc_bind!(server, service, UserGet, user);
    let server = rpc_bind!(server, service, UserList, list_users);
    let server = rpc_bind!(server, service, UserLastSeen, last_seen);
    let server = rpc_bind!(server, service, UsersLastSeen, last_seen_of);
    rpc_bind!(server, service, AuthKeys, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_stored_as_sha256_hex() {
        let h = token_hash("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
    }
}
