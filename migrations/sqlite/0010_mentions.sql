-- Who each message mentions (`@name`), by the name's mention key (`domain::mentions`):
-- written with the message, in its transaction, so a reader's mentions past their mark
-- are counted like their unread messages.
CREATE TABLE mentions (
    name_key   TEXT    NOT NULL,
    room       TEXT    NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (name_key, room, message_id)
);

-- What a user is notified of in a room: 'all' messages, 'mentions' (no row), or 'none'.
CREATE TABLE room_notify (
    user_id TEXT NOT NULL,
    room    TEXT NOT NULL,
    notify  TEXT NOT NULL,
    PRIMARY KEY (user_id, room)
);
