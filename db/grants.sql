-- Least privilege for the services' account, re-applied after every migration.
-- The official MySQL image grants MYSQL_USER everything on its database;
-- this narrows it to what the consumers do. {user} and {database} are
-- filled in by db/migrate.py from MYSQL_USER and MYSQL_DATABASE.

REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{user}'@'%';
GRANT SELECT, INSERT, DELETE ON `{database}`.`students` TO '{user}'@'%';
GRANT SELECT, INSERT ON `{database}`.`requests` TO '{user}'@'%';
