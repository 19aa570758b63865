-- Accounts besides the services', re-applied after every migration by db/migrate.py,
-- which then gives each service its own account and grants (common/accounts.py).
-- {user} and {database} are filled in from MYSQL_USER and MYSQL_DATABASE.

-- The image's MYSQL_USER: only the database's health check logs in with it
-- (SELECT 1, no database), so it keeps nothing but the right to log in.
REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{user}'@'%';
-- root only on localhost: the socket inside the db container, which this job
-- shares. A volume made before that (the images' default) still has root@'%'.
DROP USER IF EXISTS 'root'@'%';
