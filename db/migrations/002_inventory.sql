-- The inventory of the assignment's description: items with their stock
-- level, and orders that take from it. Stock is a signed column with a CHECK,
-- so a bug that would take it below zero fails loudly instead of wrapping.

CREATE TABLE IF NOT EXISTS items (
    sku        VARCHAR(32)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    name       VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    quantity   BIGINT       NOT NULL DEFAULT 0,
    request_id VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (sku),
    CONSTRAINT stock_never_negative CHECK (quantity >= 0)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS orders (
    order_id   BIGINT       NOT NULL AUTO_INCREMENT,
    sku        VARCHAR(32)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    quantity   BIGINT       NOT NULL,
    status     VARCHAR(16)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'placed',
    -- One order per request: a redelivered place_order can never place a second.
    request_id VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (order_id),
    UNIQUE KEY orders_request_id (request_id),
    CONSTRAINT orders_item FOREIGN KEY (sku) REFERENCES items (sku),
    CONSTRAINT order_quantity_positive CHECK (quantity >= 1)
) ENGINE = InnoDB;
