-- Rooms are created on first use (their first message) and listed from here.
CREATE TABLE rooms (
    name       TEXT    PRIMARY KEY,
    -- Unix time in microseconds, UTC.
    created_at INTEGER NOT NULL
);

INSERT INTO rooms (name, created_at)
SELECT room, MIN(created_at) FROM messages GROUP BY room;

-- Server-wide values that must survive restarts, such as the cookie signing key.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
