-- The most recent operator actions, newest first.
SELECT action_id, at, actor, action, target, details
FROM operator_actions
ORDER BY action_id DESC
LIMIT $1
