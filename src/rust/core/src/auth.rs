//! Token sources. Everything that speaks to Azure with Entra ID takes an
//! `Arc<dyn TokenCredential>` (the `azure_core` trait), so ARM, Blob and ACR share one.

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use std::fmt;
use time::OffsetDateTime;

/// A bearer token the user already has (e.g. from `az account get-access-token`).
pub struct StaticToken {
    token: Secret,
    expires_on: OffsetDateTime,
}

impl StaticToken {
    pub fn new(token: String, expires_on: OffsetDateTime) -> Self {
        StaticToken {
            token: Secret::new(token),
            expires_on,
        }
    }
}

// Never print the token itself.
impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticToken")
            .field("expires_on", &self.expires_on)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(self.token.clone(), self.expires_on))
    }
}
