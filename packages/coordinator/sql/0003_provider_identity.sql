-- Identity v2 (specs/admission.md §6): a provider's pinned Ed25519 public key. Public keys are
-- not secret; they are stored as sent (base64url of the 32 raw bytes). One row per provider id:
-- the primary key is what decides two enrolments racing for one id.
CREATE TABLE provider_identity_keys (
  provider_id          text PRIMARY KEY,
  public_key           text NOT NULL,
  generation           integer NOT NULL DEFAULT 1,
  -- The key before the last rotation, valid for `connect` until previous_valid_until.
  previous_key         text,
  previous_valid_until timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  rotated_at           timestamptz,
  -- revoke-identity: no connect, no recovery, until reset-identity deletes the row.
  revoked_at           timestamptz,
  CONSTRAINT provider_identity_keys_provider_id_format CHECK (provider_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
  CONSTRAINT provider_identity_keys_public_key_format CHECK (public_key ~ '^[A-Za-z0-9_-]{43}$'),
  CONSTRAINT provider_identity_keys_previous_key_format CHECK (previous_key IS NULL OR previous_key ~ '^[A-Za-z0-9_-]{43}$'),
  CONSTRAINT provider_identity_keys_generation_positive CHECK (generation >= 1)
);

-- Token expiry and rotation with grace apply to key-pinned ids only; for the others both stay
-- NULL. A token in grace (grace_until set) has a successor: it still validates until
-- grace_until, but it no longer counts as the id's one active token.
ALTER TABLE provider_tokens
  ADD COLUMN expires_at  timestamptz,
  ADD COLUMN grace_until timestamptz;

DROP INDEX provider_tokens_one_active_per_provider;
CREATE UNIQUE INDEX provider_tokens_one_active_per_provider
  ON provider_tokens (provider_id) WHERE revoked_at IS NULL AND grace_until IS NULL;
