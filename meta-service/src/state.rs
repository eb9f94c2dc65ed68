//! What the operator surface's handlers work with: its state. A leaf module: the admin API and
//! the status page both depend on it, and it on neither. (The caller is
//! `memberlake::http::Caller`, set by the surface's token check.)

use memberlake::catalog::{Catalog, PriorityKnobs};
use memberlake::config::LaneArgs;

#[derive(Clone)]
pub struct AdminState {
    pub catalog: Catalog,
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
