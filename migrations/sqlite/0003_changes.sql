-- Messages that can change: who wrote them (so only they may edit or delete), an id the
-- sender's page drew (so a message sent twice is stored once), and the changes themselves.
--
-- A change (an edit, a delete) is a row of its own in this table, with `target` naming the
-- message it changed: it takes the next id, so it is committed, ordered, caught up and
-- published exactly as a message is. The message's own row holds its current version
-- (the new text, `edited_at`, or `deleted_at` with the text gone); a change row holds no
-- text at all. Rows from before this migration have no author id and cannot be changed.
ALTER TABLE messages ADD COLUMN author_id TEXT;
ALTER TABLE messages ADD COLUMN client_id TEXT;
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted_at INTEGER;
ALTER TABLE messages ADD COLUMN target INTEGER;

-- One message per (author, client id): a resend finds the first.
CREATE UNIQUE INDEX messages_client_id ON messages (author_id, client_id)
    WHERE client_id IS NOT NULL;
-- A room's messages without its change rows: history pages read this.
CREATE INDEX messages_room_posts ON messages (room, id) WHERE target IS NULL;
