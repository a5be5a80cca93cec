-- Claimed names. `id` is the user id the name was claimed with (32 hex digits), so a
-- guest's earlier messages stay theirs. `name_key` is the confusable skeleton of the name
-- case-folded, `look_key` the skeleton case-folded (`domain::NameKey` says why two): each
-- is unique, so no look-alike of a claimed name can be claimed or taken by a guest.
CREATE TABLE accounts (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    name_key      TEXT    NOT NULL UNIQUE,
    look_key      TEXT    NOT NULL UNIQUE,
    -- A PHC string: Argon2id, its parameters and salt.
    password_hash TEXT    NOT NULL,
    moderator     BOOLEAN NOT NULL DEFAULT FALSE,
    -- Unix time in microseconds, UTC.
    created_at    BIGINT NOT NULL
);

-- Signed-in browsers. Only the SHA-256 of a session's token is kept (64 hex digits): the
-- token itself lives in the browser's signed cookie alone. Signing out deletes the row.
CREATE TABLE sessions (
    token_digest TEXT    PRIMARY KEY,
    account_id   TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- Unix time in microseconds, UTC; a session ends a year after it began.
    created_at   BIGINT NOT NULL
);

CREATE INDEX sessions_account ON sessions (account_id);
