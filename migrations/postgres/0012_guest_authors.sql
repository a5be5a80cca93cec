-- Whether a message's author was a guest when they wrote it: pages show a guest's name
-- with a short tag of their user id, so two guests under one name are told apart (a
-- claimed name is unique and shown bare). Messages from before this migration are a
-- guest's when their author holds no account now.
ALTER TABLE messages ADD COLUMN author_guest BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE messages SET author_guest = TRUE
WHERE author_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM accounts WHERE accounts.id = messages.author_id);
