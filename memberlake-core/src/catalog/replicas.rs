//! The replicas of an API surface, as each one sees them: the denominator of a caller's shared
//! rate limit ([`crate::http::fleet`]).

use std::time::Duration;

use super::{secs, sql, Catalog, Result};

impl Catalog {
    /// Records that `replica` of `surface` is alive and returns how many replicas of `surface`
    /// are (itself included): those heard from within `alive_within`. Rows silent for longer
    /// than `forget_after` are deleted (a replica killed without leaving).
    pub async fn replica_heartbeat(
        &self,
        surface: &str,
        replica: &str,
        alive_within: Duration,
        forget_after: Duration,
    ) -> Result<u32> {
        let live: i64 = sqlx::query_scalar(sql!("api_replicas", "heartbeat"))
            .bind(surface)
            .bind(replica)
            .bind(secs(alive_within))
            .bind(secs(forget_after))
            .fetch_one(&self.pool)
            .await?;
        Ok(u32::try_from(live).unwrap_or(u32::MAX))
    }

    /// `replica` of `surface` stops: the others stop counting it at their next heartbeat.
    pub async fn replica_leave(&self, surface: &str, replica: &str) -> Result<()> {
        sqlx::query(sql!("api_replicas", "leave")).bind(surface).bind(replica).execute(&self.pool).await?;
        Ok(())
    }
}
