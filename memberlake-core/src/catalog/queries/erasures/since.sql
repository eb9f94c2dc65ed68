-- Erasures recorded after sequence number $1, plus every one of the last five minutes, in
-- order: how a matcher learns of new ones. Sequence numbers are drawn at insert, not at commit,
-- so an erasure may become visible after one with a higher number; the five-minute window (far
-- longer than the one-statement transaction that records an erasure) catches it. Matchers
-- keep a set, so a row read twice costs nothing.
SELECT seq, email_hash
FROM erasures
WHERE seq > $1 OR requested_at > now() - interval '5 minutes'
ORDER BY seq
