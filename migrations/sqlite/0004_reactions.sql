-- Reactions: one row per (message, emoji, user). Toggling one is a change like an edit (a
-- row in messages with the next id); this table holds the current state. A deleted
-- message loses its reactions with its text.
CREATE TABLE reactions (
    message_id INTEGER NOT NULL,
    emoji      TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    -- The reactor's name when they reacted.
    name       TEXT   NOT NULL,
    -- Unix time in microseconds, UTC.
    created_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);
