-- Operators' public keys that a password reset replaced: every sweep removes their slots from the
-- repositories, also from those that were offline at the time of the reset.
CREATE TABLE retired_keys (
  public_key  TEXT PRIMARY KEY NOT NULL,
  operator_id TEXT REFERENCES operators(id) ON DELETE SET NULL,
  retired_at  TEXT NOT NULL
);
