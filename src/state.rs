//! `AppState`: the one wiring point, handed to every request and connection. It holds
//! handles (cheap `Arc` clones) and no logic; every dependency of a handler is visible
//! here, and there are no statics, so two servers can run in one process.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::Audit;
use crate::auth::Verifier;
use crate::authz::RoleTable;
use crate::config::{Cidr, Config};
use crate::history::HistoryWriter;
use crate::hub::{Hub, Registry};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::passwords::Passwords;
use crate::ratelimit::{FailureWindow, Limiters};
use crate::refusals::Refusals;
use crate::store::Store;

/// Shared server state: one pointer. Every connection keeps a clone for its whole life,
/// so a clone must cost 8 bytes and one reference count, not a copy of every handle
/// (the fields below were about 40 `Arc`s, 500 bytes per idle connection).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub hub: Arc<Hub>,
    pub registry: Arc<Registry>,
    pub limiters: Arc<Limiters>,
    /// Failed logins per account (checked before hashing).
    pub login_failures: Arc<FailureWindow>,
    /// Requests refused by any limit, counted for the log's periodic summary.
    pub refusals: Arc<Refusals>,
    pub passwords: Passwords,
    pub verifier: Arc<Verifier>,
    /// Roles and their permissions, cached from the store.
    pub roles: Arc<RoleTable>,
    pub audit: Audit,
    /// Counters for `GET /metrics`.
    pub metrics: Arc<Metrics>,
    pub history: HistoryWriter,
    /// Users' notification subscribers and inbox ordering.
    pub notifier: Arc<Notifier>,
    pub trusted_proxies: Arc<[Cidr]>,
    /// Cancelled when shutdown begins.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// When this server started (ms since the epoch), for uptime in stats.
    pub started_ms: u64,
}
