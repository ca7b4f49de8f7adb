-- The next modify sequence of an order, stamped when a modify is enqueued (atomic, so two
-- modifies enqueued at once by any number of clients are ordered as Redis saw them).
-- KEYS[1] order hash   KEYS[2] order-done list (unused)   KEYS[3] active-orders sorted set (unused)
-- Returns the sequence (1, 2, ...), or 0 when the order does not exist
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], 'modify_seq', 1)
