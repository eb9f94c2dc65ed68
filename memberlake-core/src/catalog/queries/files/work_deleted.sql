-- Records that version $1's runs ($2 false) or every work object ($2 true) are deleted.
UPDATE files
SET runs_deleted_at = coalesce(runs_deleted_at, now()),
    work_deleted_at = CASE WHEN $2 THEN now() ELSE work_deleted_at END
WHERE file_id = $1
