-- Repositories that commands named by path (not a registered storage) have used: the keychain may
-- hold their secret, so the custody sweep seals them to the super admins and withholds that
-- secret like a registered storage's.
CREATE TABLE known_repositories (
    location TEXT PRIMARY KEY,
    repository_id TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
