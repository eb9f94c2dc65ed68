//! What the operator surface's handlers work with: its state and the caller. A leaf module:
//! the admin API and the status page both depend on it, and it on neither.

use memberlake::catalog::{Catalog, PriorityKnobs};
use memberlake::config::LaneArgs;
use memberlake::http::Tokens;

#[derive(Clone)]
pub struct AdminState {
    pub catalog: Catalog,
    pub tokens: Tokens,
    pub knobs: PriorityKnobs,
    pub lanes: LaneArgs,
}

impl AdminState {
    /// Minutes of throughput the overview shows.
    pub const OVERVIEW_MINUTES: i32 = 15;

    /// The overview as the status page and `GET /admin/v1/overview` show it.
    pub async fn overview(&self) -> memberlake::catalog::Result<memberlake::catalog::Overview> {
        self.catalog
            .overview(self.lanes.express_max_file_size, self.lanes.urgent_priority, Self::OVERVIEW_MINUTES)
            .await
    }
}

/// Who is calling, as the token check established it.
#[derive(Clone, Debug)]
pub struct Actor(pub String);
