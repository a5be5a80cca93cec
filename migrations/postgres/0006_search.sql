-- Full-text search: each message's current text as a tsvector (English stems, so
-- "deploys" finds "deployed"), kept by the database itself (a generated column, so it can
-- never disagree with the body: an edit re-derives it, a delete empties the body and with
-- it the vector), and a GIN index over the messages (change rows hold no text).
ALTER TABLE messages
    ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED;

CREATE INDEX messages_search ON messages USING GIN (search) WHERE target IS NULL;
