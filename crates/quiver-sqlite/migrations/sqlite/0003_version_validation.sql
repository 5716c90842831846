-- The validation job's result on each version (JSON), NULL while pending.
ALTER TABLE versions ADD COLUMN validation TEXT;
