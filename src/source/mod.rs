//! Where change events come from: the MariaDB binlog and snapshots (issue 2).
