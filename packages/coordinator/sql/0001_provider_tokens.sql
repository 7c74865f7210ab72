-- Provider bearer tokens. Only the SHA-256 of a token is stored; the first 12 hex characters of
-- the cleartext are kept so that operators can tell tokens apart and revoke them.
CREATE TABLE provider_tokens (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  token_hash    text NOT NULL,
  token_prefix  text NOT NULL,
  provider_id   text NOT NULL,
  provider_name text NOT NULL,
  origin        text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz,
  revoked_at    timestamptz,
  CONSTRAINT provider_tokens_token_hash_key UNIQUE (token_hash),
  CONSTRAINT provider_tokens_token_hash_format CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  CONSTRAINT provider_tokens_token_prefix_format CHECK (token_prefix ~ '^[0-9a-f]{12}$'),
  CONSTRAINT provider_tokens_provider_id_format CHECK (provider_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
  CONSTRAINT provider_tokens_provider_name_length CHECK (char_length(provider_name) BETWEEN 1 AND 253),
  CONSTRAINT provider_tokens_origin_check CHECK (origin IN ('self_minted', 'operator_issued'))
);

-- The only enforcement of "one valid bearer per identity". Admission never checks first and
-- inserts second; it inserts and lets this index refuse (SQLSTATE 23505 on this name).
CREATE UNIQUE INDEX provider_tokens_one_active_per_provider
  ON provider_tokens (provider_id) WHERE revoked_at IS NULL;

CREATE INDEX provider_tokens_active_prefix
  ON provider_tokens (token_prefix) WHERE revoked_at IS NULL;
