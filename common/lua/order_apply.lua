-- Apply a pushed or reconciled broker update only if it moves the order forward (RANK):
-- a late OPEN never undoes a COMPLETE, a replay changes nothing, OPEN -> OPEN applies when the
-- fill grows or a field changes (never when the fill shrinks). Unknown ids are published only.
-- KEYS[1] order hash   KEYS[2] order-done list   KEYS[3] active-orders sorted set
-- ARGV[1] state   ARGV[2] broker_order_id   ARGV[3] filled_quantity   ARGV[4] average_price ('' none)
-- ARGV[5] broker_status   ARGV[6] message   ARGV[7] source   ARGV[8] the update as JSON (published)
-- ARGV[9] account (channel of an unknown order)   ARGV[10] pending_quantity   ARGV[11] exchange_ts
-- Returns {changed (1|0), state after, known (1|0)}
local now = now_ms()
local f = redis.call('HMGET', KEYS[1], 'state', 'filled_quantity', 'average_price', 'broker_status',
  'broker_order_id', 'pending_quantity')
local cur = f[1]
if not cur then
  redis.call('PUBLISH', CHANNEL_PREFIX .. ARGV[9], ARGV[8])
  return {0, '', 0}
end
local new = ARGV[1]
local filled, cur_filled = tonumber(ARGV[3]) or 0, tonumber(f[2] or '0') or 0
if new == cur then
  if new ~= 'OPEN' or filled < cur_filled then return {0, cur, 1} end
  local same = filled == cur_filled and (ARGV[4] == '' or ARGV[4] == (f[3] or ''))
    and ARGV[5] == (f[4] or '') and (ARGV[2] == '' or ARGV[2] == (f[5] or ''))
    and ARGV[10] == (f[6] or '0')
  if same then return {0, cur, 1} end
elseif not (RANK[new] and RANK[new] > RANK[cur] and TRANSITIONS[cur][new]) then
  return {0, cur, 1}
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'broker_order_id', ARGV[2]) end
if filled >= cur_filled then redis.call('HSET', KEYS[1], 'filled_quantity', filled) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'average_price', ARGV[4]) end
redis.call('HSET', KEYS[1], 'state', new, 'broker_status', ARGV[5], 'pending_quantity', ARGV[10],
  'exchange_ts', ARGV[11], 'updated_ms', now)
if new == 'REJECTED' and ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[6]) end
push_history(new, now, ARGV[7])
after_change(order_id(), new, ARGV[8], now)
return {1, new, 1}
