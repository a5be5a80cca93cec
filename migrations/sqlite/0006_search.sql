-- Full-text search: an FTS5 index over the messages' current text, words reduced to their
-- stems (the porter tokenizer over unicode61, accents folded), so "deploys" finds
-- "deployed". It holds no copy of the text (content='messages'): snippets read the row.
--
-- Triggers keep it in step inside the same transaction as the write, so a search never
-- finds what was edited away or deleted (a delete empties the body): an edit or a delete
-- takes the old words out and puts the new ones in. Change rows (`target` set) hold no
-- text and are never indexed.
CREATE VIRTUAL TABLE messages_search USING fts5(
    body,
    content = 'messages',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

INSERT INTO messages_search (rowid, body)
SELECT id, body FROM messages WHERE target IS NULL AND body <> '';

CREATE TRIGGER messages_search_insert AFTER INSERT ON messages
WHEN new.target IS NULL AND new.body <> ''
BEGIN
    INSERT INTO messages_search (rowid, body) VALUES (new.id, new.body);
END;

CREATE TRIGGER messages_search_update AFTER UPDATE OF body ON messages
WHEN new.target IS NULL
BEGIN
    INSERT INTO messages_search (messages_search, rowid, body)
    SELECT 'delete', old.id, old.body WHERE old.body <> '';
    INSERT INTO messages_search (rowid, body)
    SELECT new.id, new.body WHERE new.body <> '';
END;

CREATE TRIGGER messages_search_delete AFTER DELETE ON messages
WHEN old.target IS NULL AND old.body <> ''
BEGIN
    INSERT INTO messages_search (messages_search, rowid, body) VALUES ('delete', old.id, old.body);
END;
