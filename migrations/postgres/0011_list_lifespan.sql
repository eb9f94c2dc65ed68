-- A list's lifespan (issue 20): once an advertiser's active list is older than its lifespan,
-- it stops matching (every lookup answers "not a member") until the advertiser uploads a fresh
-- list. Age counts from the active version's object's last-modified time in the lake: when the
-- advertiser last refreshed the list, whatever the pipeline did with it since. NULL: unlimited,
-- the default (today's behaviour).
ALTER TABLE advertisers ADD COLUMN lifespan interval CHECK (lifespan > interval '0');
