//! Typed clients of other roles over the RPC port, shared by the roles that call them.

use crate::startup::StartupError;
use std::sync::Arc;

use chat_domain::assets::AssetRecord;
use chat_domain::config::Config;
use chat_domain::contracts::assets::{
    AssetCheck, AssetCheckUse, AssetGrant, AssetGrantRead, AssetUse,
};
use chat_domain::contracts::auth::AuthKeys;
use chat_domain::contracts::groups::{GroupGet, GroupRef};
use chat_domain::rpc::CallContext;
use chat_domain::tokens::{
    public_keys_from_file, KeySource, PublicKeyJwk, TokenVerifier, VerifyingKey,
};
use chat_domain::{Error, ErrorCode};

use crate::rpc::RpcClient;

/// Fetches verification keys from auth over RPC.
pub struct RpcKeySource(pub RpcClient);

#[async_trait::async_trait]
impl KeySource for RpcKeySource {
    async fn fetch(&self) -> Result<Vec<PublicKeyJwk>, Error> {
        self.0.call::<AuthKeys>(&(), &CallContext::internal()).await
    }
}

/// The extra verification keys in `JWT_PUBLIC_KEY_FILE` (none when unset).
pub fn configured_public_keys(config: &Config) -> Result<Vec<VerifyingKey>, StartupError> {
    public_keys_from_file(config.jwt_public_key_file.as_deref()).map_err(|why| {
        StartupError::InvalidSetting {
            variable: "JWT_PUBLIC_KEY_FILE",
            why,
        }
    })
}

/// The token verifier of a non-auth role: the keys in `JWT_PUBLIC_KEY_FILE` if set, and auth's
/// published keys (fetched over RPC when a token names a key not known yet).
pub fn verifier(config: &Config, rpc: &RpcClient) -> Result<TokenVerifier, StartupError> {
    Ok(TokenVerifier::new(
        configured_public_keys(config)?,
        Some(Arc::new(RpcKeySource(rpc.clone()))),
    ))
}

/// Refuses an access token whose session has ended (`invalid_token`, as an expired one). When
/// the record of ended sessions cannot be read, the token is let through: a Redis outage must
/// not sign everyone out; it is logged.
pub async fn check_session(
    revocations: &dyn crate::store::Revocations,
    claims: &chat_domain::tokens::AccessClaims,
) -> Result<(), Error> {
    let Some(session) = &claims.sid else {
        return Ok(());
    };
    match revocations.is_revoked(session).await {
        Ok(false) => Ok(()),
        Ok(true) => Err(chat_domain::error::RequestError::InvalidToken.into()),
        Err(e) => {
            tracing::warn!(error = %e, "ended sessions unavailable; the token is let through");
            Ok(())
        }
    }
}

/// Whether `caller` is a member of `group_id`, asked of the group role (`group.get`: not found
/// means not a member, or no such group).
pub async fn is_member(
    rpc: &RpcClient,
    caller: &str,
    group_id: &str,
    ctx: &CallContext,
) -> Result<bool, Error> {
    let request = GroupRef {
        caller: caller.to_string(),
        group_id: group_id.to_string(),
    };
    match rpc.call::<GroupGet>(&request, ctx).await {
        Ok(_) => Ok(true),
        Err(e) if e.code == ErrorCode::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The stored files' owner (the gateway), asked over RPC by the roles that attach files to
/// profiles, groups and messages.
#[derive(Clone)]
pub struct AssetsClient(pub RpcClient);

impl AssetsClient {
    async fn check(
        &self,
        owner_id: &str,
        url: &str,
        used_as: AssetUse,
    ) -> Result<Option<AssetRecord>, Error> {
        let request = AssetCheck {
            owner_id: owner_id.to_string(),
            url: url.to_string(),
            used_as,
        };
        self.0
            .call::<AssetCheckUse>(&request, &CallContext::internal())
            .await
    }

    /// A picture URL for `field`: an uploaded image `owner_id` owns (its record), or a URL
    /// elsewhere (`None`); anything else is refused with the reason.
    pub async fn picture(
        &self,
        field: &str,
        owner_id: &str,
        url: &str,
    ) -> Result<Option<AssetRecord>, Error> {
        let field = field.to_string();
        self.check(owner_id, url, AssetUse::Picture { field }).await
    }

    /// The stored file `url` names, if `owner_id` uploaded it.
    pub async fn attachment(
        &self,
        owner_id: &str,
        url: &str,
    ) -> Result<Option<AssetRecord>, Error> {
        self.check(owner_id, url, AssetUse::Attachment).await
    }

    /// Lets `grant` read the file.
    pub async fn grant(&self, grant: AssetGrant) -> Result<(), Error> {
        self.0
            .call::<AssetGrantRead>(&grant, &CallContext::internal())
            .await
    }
}
