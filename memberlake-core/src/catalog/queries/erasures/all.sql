-- Every erased hash: what an ingest unit drops from the runs it writes.
SELECT email_hash FROM erasures
