//! The replicas of one API surface, so that a caller's rate limit is the *service's* budget and
//! not one budget per replica (which grows with the autoscaler: issue 18).
//!
//! Each replica heartbeats a row in the catalog (`api_replicas`, one statement per beat that
//! also counts the live replicas) and enforces `budget / live replicas` of each caller's budget
//! ([`super::surface::CallerRate::share`]). Why a share and not a shared counter: a counter in
//! Postgres (or anywhere off the replica) would put a network round trip on every request at
//! 10K+ requests/s; the load balancer spreads connections over replicas, so each replica sees
//! about `1/n` of a caller's requests and a share of `1/n` of its budget admits about the budget
//! in all. The cost, stated where operators read it (README): a caller whose requests all reach
//! one replica (one keep-alive connection) gets that replica's share only.
//!
//! Failure behaviour: while the catalog cannot be reached the last count stands (no replica
//! starts admitting a whole budget because Postgres blinked); a replica that starts without the
//! catalog counts itself alone until its first heartbeat. A replica that joins or leaves is seen
//! by the others within one heartbeat; in between, the service admits up to one share too many
//! or too few. A replica's budgets start afresh (full bursts) when its share changes.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::catalog::Catalog;
use crate::config::{parse_duration, InstanceArgs};
use crate::shutdown::Shutdown;

/// How often a replica of an API surface says it is alive.
#[derive(Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetArgs {
    /// How often this replica records that it is alive, for the callers' shared rate limits
    /// (a replica silent for three of these no longer counts).
    #[arg(long, env = "MEMBERLAKE_REPLICA_HEARTBEAT", value_parser = parse_duration, default_value = "5s")]
    pub replica_heartbeat: Duration,
}

/// A replica silent for this many heartbeats no longer counts.
const ALIVE_HEARTBEATS: u32 = 3;
/// A replica silent for this long is deleted from the table (killed without leaving).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// How many replicas serve this surface, as this replica last heard (at least 1: itself).
/// Cheap to read on every request: one atomic load.
#[derive(Clone, Debug)]
pub struct LiveReplicas(Arc<AtomicU32>);

impl LiveReplicas {
    /// This replica alone: a surface whose budgets are its own (tests, the CLI's servers).
    pub fn alone() -> Self {
        Self(Arc::new(AtomicU32::new(1)))
    }

    pub fn get(&self) -> NonZeroU32 {
        NonZeroU32::new(self.0.load(Ordering::Relaxed)).unwrap_or(NonZeroU32::MIN)
    }

    pub(crate) fn set(&self, n: u32) {
        self.0.store(n.max(1), Ordering::Relaxed);
    }
}

/// This replica's place among its surface's replicas, from [`join`] until [`Self::left`].
pub struct FleetMembership {
    pub live: LiveReplicas,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl FleetMembership {
    /// Waits until the replica has left (after `shutdown`): await it before the process exits,
    /// so that the others take back its share at once rather than after three heartbeats.
    pub async fn left(self) {
        let _ = self.heartbeat.await;
    }
}

/// Joins `surface`'s replicas: one heartbeat now (so that the first requests already get the
/// right share when the catalog answers), then one every `args.replica_heartbeat` in the
/// background until `shutdown`, when the replica leaves (its share goes back to the others).
pub async fn join(catalog: Catalog, surface: &'static str, args: FleetArgs, shutdown: Shutdown) -> FleetMembership {
    let replica = InstanceArgs::default().name();
    let live = LiveReplicas::alone();
    let beat = Heartbeat { catalog, surface, replica, every: args.replica_heartbeat, live: live.clone() };
    beat.once().await;
    FleetMembership { live, heartbeat: tokio::spawn(beat.run(shutdown)) }
}

struct Heartbeat {
    catalog: Catalog,
    surface: &'static str,
    replica: String,
    every: Duration,
    live: LiveReplicas,
}

impl Heartbeat {
    async fn once(&self) -> bool {
        let alive_within = self.every * ALIVE_HEARTBEATS;
        match self.catalog.replica_heartbeat(self.surface, &self.replica, alive_within, FORGET_AFTER).await {
            Ok(n) => {
                if n != self.live.get().get() {
                    tracing::info!(
                        surface = self.surface,
                        replicas = n,
                        "replicas sharing the callers' budgets changed"
                    );
                }
                self.live.set(n);
                metrics::gauge!("memberlake_http_replicas", "surface" => self.surface).set(f64::from(n));
                true
            }
            Err(e) => {
                tracing::warn!(surface = self.surface, error = %e, "replica heartbeat failed; keeping the last count of replicas");
                false
            }
        }
    }

    async fn run(self, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate: `join` beat already
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => { self.once().await; }
            }
        }
        if let Err(e) = self.catalog.replica_leave(self.surface, &self.replica).await {
            tracing::warn!(surface = self.surface, error = %e, "could not leave the replica table; the others stop counting this replica after three heartbeats");
        }
    }
}
