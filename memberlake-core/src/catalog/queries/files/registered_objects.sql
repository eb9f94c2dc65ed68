-- The (key, etag) pairs already registered from one lake: a meta-service's seen-set at start.
SELECT object_key, etag FROM files WHERE bucket = $1
