-- The seed's catalog, plus a least-privilege user for vecsync. Run once by MariaDB's entrypoint
-- (docker-compose.yml mounts it into /docker-entrypoint-initdb.d).
CREATE DATABASE IF NOT EXISTS catalog CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE catalog;

CREATE TABLE IF NOT EXISTS products (
    id INT AUTO_INCREMENT PRIMARY KEY,
    sku VARCHAR(50) UNIQUE NOT NULL,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    price DECIMAL(10, 2),
    last_updated TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
);

INSERT INTO products (sku, name, description, price) VALUES
('TS-001', 'Cotton T-Shirt', 'A classic crew-neck t-shirt made from 100% premium cotton.', 19.99),
('JN-001', 'Slim Fit Jeans', 'Modern slim fit jeans crafted from stretch denim for comfort.', 79.50);

-- vecsync needs to read the binlog and the table, nothing more (no RELOAD: the snapshot takes no
-- global lock). REPLICATION CLIENT is MariaDB's BINLOG MONITOR. Change the password for anything
-- but a local demo, and pass it with MARIADB_PASSWORD or --mariadb-password-file.
CREATE USER IF NOT EXISTS 'vecsync'@'%' IDENTIFIED BY 'vecsync-demo-password';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'vecsync'@'%';
GRANT SELECT ON catalog.* TO 'vecsync'@'%';
