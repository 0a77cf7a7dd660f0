-- Failed sign-ins under names that are no operator's, counted like an operator's (slower each
-- time, locked after as many) so that sign-in tells nobody which names exist. Kept by a salted
-- hash of the name: a name typed may be a password typed into the wrong field.
CREATE TABLE sign_in_strangers (
    name_hash TEXT PRIMARY KEY,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until TEXT
);
