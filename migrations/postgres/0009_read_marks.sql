-- How far each user has read each room: the id of the newest message they have seen
-- there (a message's own id, not a change's). Written in batches by the commit writer,
-- only ever moved forward. A room without a row has never been read by that user, and
-- shows no unread count.
CREATE TABLE read_marks (
    user_id   TEXT    NOT NULL,
    room      TEXT    NOT NULL,
    last_read BIGINT NOT NULL,
    PRIMARY KEY (user_id, room)
);
