-- ping: is the connection alive? The LISTEN connection's keepalive, and a maintenance probe
-- after an outage. (This comment shows in pg_stat_activity.query: "ping" names the caller.)
SELECT 1
