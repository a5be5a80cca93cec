-- A reply names the message it answers (of the same room); pages show a quote of that
-- message as it is now, read through this column.
ALTER TABLE messages ADD COLUMN reply_to INTEGER;
