-- The assignment's records, and the request ledger that makes every write
-- idempotent: a redelivered or retried request finds its answer here.

CREATE TABLE IF NOT EXISTS students (
    -- ascii_bin: the same order and comparison on MySQL 8 and on MariaDB.
    srn        VARCHAR(32)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    name       VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    section    VARCHAR(16)  CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    request_id VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (srn)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS requests (
    request_id  VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    routing_key VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- sha256 of the routing key and the cleaned request: same id, other request = conflict.
    fingerprint CHAR(64)    CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    reply       MEDIUMTEXT  CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    created_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (request_id)
) ENGINE = InnoDB;
