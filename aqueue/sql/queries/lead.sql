-- lead: try to become the leader of this schema's workers (rescue, retention and periodic
-- jobs run on the leader alone): a session advisory lock, taken on the worker's LISTEN
-- connection, which it keeps for its whole life; the lock goes with that connection, so a
-- killed leader's is released by its backend's exit. $1 the schema. Never waits.
SELECT pg_try_advisory_lock(hashtext('aqueue.leader'), hashtext($1::text))
