-- Who may no longer post: a user id (an account's, or a guest's), the name they had when
-- banned, and the moderator who banned them. Every node re-reads this table every couple
-- of seconds; lifting a ban deletes the row.
CREATE TABLE bans (
    user_id    TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    banned_by  TEXT    NOT NULL,
    -- Unix time in microseconds, UTC.
    created_at INTEGER NOT NULL
);
