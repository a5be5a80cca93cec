-- Every chat message, in every room. `id` is the store's order: increasing, never reused,
-- and (because inserts take an advisory lock) committed in id order, so it doubles as the
-- paging and catch-up cursor.
CREATE TABLE messages (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room       TEXT   NOT NULL,
    author     TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    -- Unix time in microseconds, UTC.
    created_at BIGINT NOT NULL
);

CREATE INDEX messages_room_id ON messages (room, id);
