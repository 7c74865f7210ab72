-- Mint, identity and recovery limits (specs/admission.md §7): token buckets shared by every
-- coordinator on this database, so that a limit holds across restarts and across cluster nodes.
-- A row is a bucket's level at updated_ms (the coordinators' clock, in ms); the level refills
-- continuously up to the burst, which the caller passes with every take.
CREATE TABLE rate_buckets (
  bucket     text PRIMARY KEY,
  level      double precision NOT NULL,
  updated_ms bigint NOT NULL,
  CONSTRAINT rate_buckets_bucket_length CHECK (length(bucket) BETWEEN 1 AND 160)
);

CREATE INDEX rate_buckets_updated ON rate_buckets (updated_ms);

-- Takes one token from every named bucket, or from none. Returns (0, NULL) when taken; else the
-- milliseconds until every bucket could give one, and the bucket that waits longest. One
-- statement for the caller, so that the check and the take cannot be split by another node.
--
-- - Every row is created (full) or locked by one INSERT … ON CONFLICT DO UPDATE in key order:
--   two takes never wait on each other in a cycle, and a prune cannot delete a row between the
--   check and the take.
-- - A bucket flagged in p_full_only gives a token only while it is full (the newcomer path:
--   a prefix that has minted nothing for a whole refill period).
-- - p_budget_ms bounds the statement: lock waits past it fail (lock_timeout), and so does a
--   statement that finds, before it writes, that it has run longer (a server frozen and thawed).
--   The caller has given up by then; a take it no longer waits for must not spend a token.
CREATE FUNCTION take_rate_tokens(
  p_buckets text[], p_bursts double precision[], p_per_ms double precision[], p_full_only boolean[], p_now bigint, p_budget_ms integer
)
RETURNS TABLE (wait_ms double precision, bucket text)
LANGUAGE plpgsql AS $$
DECLARE
  n integer := coalesce(array_length(p_buckets, 1), 0);
  levels double precision[] := '{}';
  lvl double precision;
  need double precision;
  worst double precision := 0;
  worst_bucket text := NULL;
  row_level double precision;
  row_updated bigint;
BEGIN
  PERFORM set_config('lock_timeout', greatest(p_budget_ms, 1)::text, true);
  INSERT INTO rate_buckets AS b (bucket, level, updated_ms)
    SELECT u.key, p_bursts[u.i], p_now FROM unnest(p_buckets) WITH ORDINALITY AS u(key, i) ORDER BY u.key
    ON CONFLICT ON CONSTRAINT rate_buckets_pkey DO UPDATE SET level = b.level;
  FOR i IN 1 .. n LOOP
    SELECT r.level, r.updated_ms INTO STRICT row_level, row_updated FROM rate_buckets r WHERE r.bucket = p_buckets[i];
    lvl := least(p_bursts[i], row_level + greatest(0, p_now - row_updated) * p_per_ms[i]);
    levels := levels || lvl;
    need := CASE WHEN p_full_only[i] THEN p_bursts[i] ELSE 1 END;
    IF lvl < need AND (need - lvl) / p_per_ms[i] > worst THEN
      worst := (need - lvl) / p_per_ms[i];
      worst_bucket := p_buckets[i];
    END IF;
  END LOOP;
  IF worst_bucket IS NOT NULL THEN
    RETURN QUERY SELECT worst, worst_bucket;
    RETURN;
  END IF;
  IF clock_timestamp() > statement_timestamp() + make_interval(secs => p_budget_ms / 1000.0) THEN
    RAISE EXCEPTION 'take_rate_tokens ran past its budget of % ms', p_budget_ms USING ERRCODE = '57014';
  END IF;
  FOR i IN 1 .. n LOOP
    UPDATE rate_buckets r SET level = levels[i] - 1, updated_ms = greatest(r.updated_ms, p_now) WHERE r.bucket = p_buckets[i];
  END LOOP;
  RETURN QUERY SELECT 0::double precision, NULL::text;
END $$;
