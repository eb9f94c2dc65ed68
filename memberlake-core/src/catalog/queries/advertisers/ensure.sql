-- An advertiser row exists before its first file refers to it.
INSERT INTO advertisers (advertiser_id) VALUES ($1)
ON CONFLICT (advertiser_id) DO NOTHING
