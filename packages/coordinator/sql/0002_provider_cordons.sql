-- Cordoned provider ids: a cordoned provider may stay connected but is never routable. Kept in
-- the database so a cordon outlives reconnects and restarts; removed by uncordon.
CREATE TABLE provider_cordons (
  provider_id text PRIMARY KEY,
  reason      text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT provider_cordons_provider_id_format CHECK (provider_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
  CONSTRAINT provider_cordons_reason_length CHECK (char_length(reason) <= 200)
);
