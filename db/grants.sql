-- Least privilege for the services' account, re-applied after every migration.
-- The official MySQL image grants MYSQL_USER everything on its database;
-- this narrows it to what the consumers do. {user} and {database} are
-- filled in by db/migrate.py from MYSQL_USER and MYSQL_DATABASE.

REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{user}'@'%';
GRANT SELECT, INSERT, DELETE ON `{database}`.`students` TO '{user}'@'%';
-- update_record changes a student's name and section, never the SRN.
GRANT UPDATE (name, section) ON `{database}`.`students` TO '{user}'@'%';
GRANT SELECT, INSERT ON `{database}`.`requests` TO '{user}'@'%';
-- Stock changes are the only updates of items; orders are only ever added.
GRANT SELECT, INSERT ON `{database}`.`items` TO '{user}'@'%';
GRANT UPDATE (quantity) ON `{database}`.`items` TO '{user}'@'%';
GRANT SELECT, INSERT ON `{database}`.`orders` TO '{user}'@'%';
