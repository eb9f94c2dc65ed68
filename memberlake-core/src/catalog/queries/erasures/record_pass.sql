-- Records one leader pass over erasure $1: work objects rewritten $2; complete if the pass
-- started settled ($3).
UPDATE erasures
SET passes = passes + 1,
    last_pass_at = now(),
    objects_rewritten = objects_rewritten + $2,
    completed_at = CASE WHEN $3 THEN coalesce(completed_at, now()) ELSE completed_at END
WHERE email_hash = $1
