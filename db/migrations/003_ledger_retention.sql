-- The request ledger forgets (docs/reliability.md, "The request ledger"):
-- `subject` is the SRN whose personal data an answer holds, so that deleting
-- that student erases it from the answers; entries older than
-- LEDGER_RETENTION_H are pruned in small batches along `created_at`.

ALTER TABLE requests
    ADD COLUMN subject VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ADD INDEX requests_subject (subject),
    ADD INDEX requests_created_at (created_at);
