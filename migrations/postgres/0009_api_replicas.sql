-- The replicas serving each API surface ('matcher', 'admin'), each refreshing its row every few
-- seconds. A caller's rate limit is the surface's budget, and each replica enforces its share
-- of it: budget / live replicas (memberlake::http::fleet). Before this table the limit was
-- per replica, so a caller's ceiling grew with the autoscaler. Times are the database's clock,
-- the one clock every replica shares.
CREATE TABLE api_replicas (
    surface    text        NOT NULL,
    replica    text        NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (surface, replica)
);
