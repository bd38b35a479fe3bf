//! What a unit of work reaches: the environment, its configuration, D1 and the calls it may
//! still make.

use crate::calls::Calls;
use kyc_core::config::Config;
use worker::{D1Database, Env};

pub struct Services<'a> {
    pub env: &'a Env,
    pub config: &'a Config,
    pub db: &'a D1Database,
    pub calls: Calls,
}
