-- The next modify sequence of an order, stamped when a modify is enqueued (atomic, so two
-- modifies enqueued at once by any number of clients are ordered as Redis saw them). The
-- modify's changes are recorded under its seq in the same step, so that whichever worker runs
-- a later seq first can send the merged target (every seq's changes, in seq order) and none is
-- lost to the race (see order_modify_done.lua for their clean-up).
-- KEYS[1] order hash   KEYS[2] order-done list (unused)   KEYS[3] active-orders sorted set (unused)
-- ARGV[1] JSON object of the modify's changes ('' or absent: not recorded, an older client)
-- ARGV[2] message id ('' or absent: none): a message stamped before gets its seq again, so a
--         modify enqueued by name without a seq is stamped once per message, not per delivery
-- Returns the sequence (1, 2, ...), or 0 when the order does not exist
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local changes, msg = ARGV[1] or '', ARGV[2] or ''
if msg ~= '' then
  local seen = redis.call('HGET', KEYS[1], 'modify_msg:' .. msg)
  if seen then return tonumber(seen) end
end
local seq = redis.call('HINCRBY', KEYS[1], 'modify_seq', 1)
if changes ~= '' then redis.call('HSET', KEYS[1], 'modify_changes:' .. seq, changes) end
-- Kept after the modify is applied (a redelivery after that must still find its seq, and be
-- dropped as stale); one short field per by-name modify, gone with the order hash.
if msg ~= '' then redis.call('HSET', KEYS[1], 'modify_msg:' .. msg, seq) end
return seq
