-- An advertiser's weight in the effective priority (1 = neutral); creates the row if needed.
INSERT INTO advertisers (advertiser_id, weight) VALUES ($1, $2)
ON CONFLICT (advertiser_id) DO UPDATE SET weight = EXCLUDED.weight
