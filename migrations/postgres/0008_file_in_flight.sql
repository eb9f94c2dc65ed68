-- One definition of "a file is in flight" (FileState::is_in_flight in memberlake-records): its
-- version is still being built or awaits a decision. Queries that ask it (supersession, the
-- one-version-at-a-time rule of rollbacks, manifest retention, failing a file) call this
-- function instead of repeating the list; the catalog suite checks that both agree for every
-- state.
CREATE FUNCTION file_in_flight(state file_state) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT state IN ('registered', 'ingesting', 'merging', 'held')
$$;
