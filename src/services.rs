//! What a unit of work reaches: the environment, its configuration, D1 and the calls it may
//! still make.

use crate::calls::Calls;
use crate::d1::Gather;
use crate::error::ApiError;
use kyc_core::config::Config;
use kyc_core::providers::ProviderProtocol;
use kyc_core::subject::Provider;
use worker::{D1Database, Env};

pub struct Services<'a> {
    pub env: &'a Env,
    pub config: &'a Config,
    pub db: &'a D1Database,
    pub calls: Calls,
    /// Shared by the jobs of a queue batch: their checks' D1 calls made together.
    pub gather: Option<&'a Gather>,
}

impl Services<'_> {
    /// The provider's protocol, or `provider_not_configured` naming the secrets it lacks.
    pub fn configured(&self, provider: Provider) -> Result<&dyn ProviderProtocol, ApiError> {
        self.config.protocol(provider).ok_or_else(|| {
            ApiError::provider_not_configured(provider, self.config.missing_secrets(provider))
        })
    }
}
