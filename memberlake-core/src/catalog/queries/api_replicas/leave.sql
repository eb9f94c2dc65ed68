-- A replica stopping: its share goes back to the others at their next heartbeat.
DELETE FROM api_replicas WHERE surface = $1 AND replica = $2
