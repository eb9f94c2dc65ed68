-- One replica's heartbeat, in one round trip: refreshes its row, forgets replicas silent for
-- long (killed without leaving), and counts the live replicas of the surface, itself included
-- (the statement's snapshot does not see its own upsert, hence the 1 + others).
-- $1 surface, $2 replica, $3 seconds within which a heartbeat means alive, $4 seconds after
-- which a silent replica's row is deleted.
WITH beat AS (
    INSERT INTO api_replicas (surface, replica) VALUES ($1, $2)
    ON CONFLICT (surface, replica) DO UPDATE SET seen_at = now()
), forgotten AS (
    DELETE FROM api_replicas
    WHERE surface = $1 AND replica <> $2 AND seen_at < now() - make_interval(secs => $4)
)
SELECT (1 + count(*))::bigint AS live
FROM api_replicas
WHERE surface = $1 AND replica <> $2 AND seen_at >= now() - make_interval(secs => $3)
