-- The room goes into the search index too, as one token (its name in hex: the tokenizer
-- would split a name at `-` and `_`), so a search in one room asks the index for the
-- room's matches alone. Before, the index gave every room's matches newest first and each
-- was checked for its room: a word common elsewhere but rare in a quiet room meant tens of
-- thousands of lookups (BENCHMARKS.md, "Search over 1,000,000 messages").
--
-- The index reads its content through a view that adds that column. Hex digits go through
-- the porter stemmer like any word; the only change it can make to one is to drop a final
-- "e" (a name ending in "n"), which leaves an odd number of digits that no other name's hex
-- has, so every room keeps a token of its own.
DROP TRIGGER messages_search_insert;
DROP TRIGGER messages_search_update;
DROP TRIGGER messages_search_delete;
DROP TABLE messages_search;

CREATE VIEW messages_search_source AS SELECT id, body, hex(room) AS room FROM messages;

CREATE VIRTUAL TABLE messages_search USING fts5(
    body,
    room,
    content = 'messages_search_source',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

INSERT INTO messages_search (rowid, body, room)
SELECT id, body, hex(room) FROM messages WHERE target IS NULL AND body <> '';

CREATE TRIGGER messages_search_insert AFTER INSERT ON messages
WHEN new.target IS NULL AND new.body <> ''
BEGIN
    INSERT INTO messages_search (rowid, body, room) VALUES (new.id, new.body, hex(new.room));
END;

CREATE TRIGGER messages_search_update AFTER UPDATE OF body ON messages
WHEN new.target IS NULL
BEGIN
    INSERT INTO messages_search (messages_search, rowid, body, room)
    SELECT 'delete', old.id, old.body, hex(old.room) WHERE old.body <> '';
    INSERT INTO messages_search (rowid, body, room)
    SELECT new.id, new.body, hex(new.room) WHERE new.body <> '';
END;

CREATE TRIGGER messages_search_delete AFTER DELETE ON messages
WHEN old.target IS NULL AND old.body <> ''
BEGIN
    INSERT INTO messages_search (messages_search, rowid, body, room)
    VALUES ('delete', old.id, old.body, hex(old.room));
END;
