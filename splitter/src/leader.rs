//! Leader election over a Postgres lease row (River's elector): take the role when it is free
//! or expired, renew it every tick, and step down on our own clock before the lease can lapse,
//! so two processes never both believe they lead. Every leader action goes through the
//! [`Leadership`] handle of the term, whose transactions first check the term still holds the
//! role (fencing).
//!
//! A session advisory lock would be simpler, but through a connection pool the lock belongs to
//! whichever connection took it and silently dies with that connection.

use std::time::{Duration, Instant};

use memberlake::catalog::{Catalog, Leadership};
use tracing::{info, warn};

pub const ROLE: &str = "splitter";

/// This process's view of the role.
pub struct Elector {
    catalog: Catalog,
    holder: String,
    ttl: Duration,
    held: Option<Leadership>,
    /// When our own clock says the lease may lapse: we stop acting before this.
    valid_until: Instant,
}

impl Elector {
    pub fn new(catalog: Catalog, holder: String, ttl: Duration) -> Self {
        Self { catalog, holder, ttl, held: None, valid_until: Instant::now() }
    }

    /// Takes or renews the role. Returns the term's handle if this process leads now.
    pub async fn tick(&mut self) -> Option<&Leadership> {
        let asked_at = Instant::now();
        match self.catalog.acquire_leadership(ROLE, &self.holder, self.ttl, self.held.as_ref()).await {
            Ok(Some(term)) => {
                if self.held.as_ref().map(Leadership::term) != Some(term.term()) {
                    info!(term = term.term(), holder = %self.holder, "became splitter leader");
                    metrics::counter!("memberlake_leader_acquired_total").increment(1);
                }
                self.held = Some(term);
                // Measured from before the request: the lease started no earlier than that.
                self.valid_until = asked_at + self.ttl.mul_f64(0.8);
            }
            Ok(None) => {
                if let Some(lost) = self.held.take() {
                    warn!(term = lost.term(), "lost splitter leadership to another process");
                }
            }
            Err(e) => {
                warn!(error = %e, "leader lease renewal failed");
                if self.held.is_some() && Instant::now() >= self.valid_until {
                    warn!(term = ?self.held.as_ref().map(Leadership::term), "stepping down: could not renew before the lease may lapse");
                    self.held = None;
                }
            }
        }
        metrics::gauge!("memberlake_splitter_is_leader").set(if self.held.is_some() { 1.0 } else { 0.0 });
        self.held.as_ref().filter(|_| Instant::now() < self.valid_until)
    }

    /// Gives the role up so a standby takes over at once.
    pub async fn resign(&mut self) {
        if let Some(term) = self.held.take() {
            let t = term.term();
            match term.resign().await {
                Ok(()) => info!(term = t, "resigned splitter leadership"),
                Err(e) => warn!(error = %e, "could not resign; the lease will expire"),
            }
        }
    }

    /// Forgets the term after a fenced action was refused.
    pub fn lost(&mut self) {
        self.held = None;
    }
}
