-- Version 10: new recipients are counted by the enqueue that inserts them, one upsert per
-- state and per queue for a whole batch, instead of by a trigger run for every row (which
-- doubled the cost of each insert). Changes and deletions are still counted by triggers.
DROP TRIGGER recipients_count_insert;
