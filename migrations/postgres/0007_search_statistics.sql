-- Finer statistics for the search column. With the default, a word the statistics do not
-- list is assumed to match about a thousand rows, so the planner walks the primary key
-- newest first expecting to stop soon, and for a rare or absent word reads every row
-- (400 ms at 1,000,000 messages; BENCHMARKS.md, "Search over 1,000,000 messages"). With
-- more words listed, such a word is estimated at a few rows and found through the index.
ALTER TABLE messages ALTER COLUMN search SET STATISTICS 1000;
ANALYZE messages;
