-- The audit log: who did what to which target, in the same transaction as the change.
INSERT INTO operator_actions (actor, action, target, details) VALUES ($1, $2, $3, $4)
