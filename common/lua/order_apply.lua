-- Apply a pushed or reconciled broker update only if it moves the order forward (RANK):
-- a late OPEN never undoes a COMPLETE, a replay changes nothing, OPEN -> OPEN applies when the
-- fill grows or a field changes (never when the fill shrinks). Unknown ids are published only.
-- A broker sighting always wins over our own verdict that the order is not at the broker (FAILED,
-- EXPIRED, cancelled before it was sent): the order moves to the broker's state, is published, and
-- the overturn is recorded and counted (`verdict_overturned`), since it means money we said was
-- not at risk is.
-- KEYS[1] order hash   KEYS[2] order-done list   KEYS[3] active-orders sorted set   KEYS[4] account stats
-- ARGV[1] state   ARGV[2] broker_order_id   ARGV[3] filled_quantity   ARGV[4] average_price ('' none)
-- ARGV[5] broker_status   ARGV[6] message   ARGV[7] source   ARGV[8] the update as JSON (published)
-- ARGV[9] account (channel of an unknown order)   ARGV[10] pending_quantity   ARGV[11] exchange_ts
-- ARGV[12] a counter of KEYS[4] to add 1 to, whatever the update did ('' or absent: none; the
--          placing worker's `placed`, counted here to save the order a round trip of its own)
-- Returns {changed (1|0), state after, known (1|0), overturned verdict ('' none),
--          cancel_requested_ms ('' none: no cancel pending), and when the fill grew: the fill
--          and average price before, and the order's request (for the account's positions)}
local now = now_ms()
if ARGV[12] and ARGV[12] ~= '' then redis.call('HINCRBY', KEYS[4], ARGV[12], 1) end
local f = redis.call('HMGET', KEYS[1], 'state', 'filled_quantity', 'average_price', 'broker_status',
  'broker_order_id', 'pending_quantity', 'cancel_requested_ms')
local cancel_pending = f[7] or ''
local cur = f[1]
if not cur then
  redis.call('PUBLISH', CHANNEL_PREFIX .. ARGV[9], ARGV[8])
  return {0, '', 0, '', ''}
end
local overturned = ''
local new = ARGV[1]
local filled, cur_filled = tonumber(ARGV[3]) or 0, tonumber(f[2] or '0') or 0
-- Ours: settled by us as not at the broker. A CANCELLED of ours has no broker order id.
local ours = OURS[cur] or (cur == 'CANCELLED' and (f[5] or '') == '')
if new == cur and ours and BROKER_SEEN[new] and ARGV[2] ~= '' then
  -- The broker reports the order in the very state we guessed (CANCELLED before it was sent):
  -- it was at the broker after all; record what the broker says (its id, any fill).
  overturned = cur
elseif new == cur then
  if new ~= 'OPEN' or filled < cur_filled then return {0, cur, 1, '', cancel_pending} end
  local same = filled == cur_filled and (ARGV[4] == '' or ARGV[4] == (f[3] or ''))
    and ARGV[5] == (f[4] or '') and (ARGV[2] == '' or ARGV[2] == (f[5] or ''))
    and ARGV[10] == (f[6] or '0')
  if same then return {0, cur, 1, '', cancel_pending} end
elseif not (RANK[new] and RANK[new] > RANK[cur] and TRANSITIONS[cur][new]) then
  if not (ours and BROKER_SEEN[new]) then return {0, cur, 1, '', cancel_pending} end
  overturned = cur
end
if overturned ~= '' then
  redis.call('HSET', KEYS[1], 'overturned_ms', now, 'overturned_from', cur)
  redis.call('HINCRBY', KEYS[4], 'verdict_overturned', 1)
  -- Terminal verdicts left the sweeper's index; a live order must be back in it (after_change
  -- then makes it due soon when a cancel is pending).
  if not TERMINAL[new] then redis.call('ZADD', KEYS[3], now + OPEN_RECHECK_MS, order_id()) end
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'broker_order_id', ARGV[2]) end
if filled >= cur_filled then redis.call('HSET', KEYS[1], 'filled_quantity', filled) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'average_price', ARGV[4]) end
redis.call('HSET', KEYS[1], 'state', new, 'broker_status', ARGV[5], 'pending_quantity', ARGV[10],
  'exchange_ts', ARGV[11], 'updated_ms', now)
if new == 'REJECTED' and ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[6]) end
push_history(new, now, ARGV[7])
after_change(order_id(), new, ARGV[8], now)
if filled > cur_filled then
  return {1, new, 1, overturned, cancel_pending, cur_filled, f[3] or '', redis.call('HGET', KEYS[1], 'request') or ''}
end
return {1, new, 1, overturned, cancel_pending}
