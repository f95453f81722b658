-- resign: give leadership up (a worker stopping, before its LISTEN connection goes back to
-- the pool). Every session-level advisory lock of this connection: a lead try whose reply
-- was lost may have taken the lock a second time (session locks count), and one unlock
-- would leave it held in the pool. The LISTEN connection takes no other advisory lock.
SELECT pg_advisory_unlock_all()
