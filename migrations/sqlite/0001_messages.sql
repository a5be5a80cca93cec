-- Every chat message, in every room. `id` is the store's order: increasing, never reused
-- (AUTOINCREMENT), so it doubles as the paging cursor.
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room       TEXT    NOT NULL,
    author     TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    -- Unix time in microseconds, UTC.
    created_at INTEGER NOT NULL
);

CREATE INDEX messages_room_id ON messages (room, id);
