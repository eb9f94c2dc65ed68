-- Tells every matcher (LISTEN $1) that an advertiser's active version changed; delivered at
-- commit, so a listener never sees an activation that is rolled back.
SELECT pg_notify($1, $2)
