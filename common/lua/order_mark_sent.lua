-- The point of no return, taken just before the request leaves: only the current attempt may
-- send, never after the deadline, and (when a limiter slot is given) never so long after its
-- slot that it could crowd the next window. All checked on Redis time, not the worker's clock.
-- An entry is never sent while its account is halted (the kill switch, common/safety.py): it is
-- settled REJECTED with the halt's reason here, atomically with the send decision, so no entry
-- whose slot comes after the halt reaches the broker. Exits (reduce_only) still go.
-- KEYS[1] order hash   KEYS[2] order-done list   KEYS[3] active-orders sorted set
-- KEYS[4] the account's halt hash   KEYS[5] the halt of every account
-- ARGV[1] attempt (from claim)   ARGV[2] source
-- ARGV[3] slot_us (the limiter slot being used; 0 = none)   ARGV[4] late tolerance in us
-- ARGV[5] '1' when the order is reduce_only (an exit)
-- Returns {verdict, deadline_ms, now_ms, now_us}; verdict is
--   ok       send now (sent_at_ms recorded)
--   lost     another delivery owns the order now, or it is no longer SENDING: do not send
--   expired  past the deadline: now EXPIRED, not sent
--   cancelled a cancel was requested: now CANCELLED, not sent
--   halted   the account is halted and the order is an entry: now REJECTED, not sent
--   late     more than the tolerance after the slot: not sent, take a new slot
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)
local f = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'deadline_ms', 'sends', 'cancel_requested_ms')
local deadline = tonumber(f[3] or '0') or 0
if f[1] ~= 'SENDING' or f[2] ~= ARGV[1] then return {'lost', deadline, now, now_us} end
if (f[5] or '') ~= '' then
  settle(order_id(), 'CANCELLED', ARGV[2], NOT_SENT_CANCEL, now)
  return {'cancelled', deadline, now, now_us}
end
if ARGV[5] ~= '1' then
  local why = redis.call('HGET', KEYS[4], 'reason') or redis.call('HGET', KEYS[5], 'reason')
  if why then
    settle(order_id(), 'REJECTED', ARGV[2], 'halted: ' .. why, now)
    return {'halted', deadline, now, now_us}
  end
end
if now > deadline then
  settle(order_id(), 'EXPIRED', ARGV[2], 'no slot before the deadline', now)
  return {'expired', deadline, now, now_us}
end
local slot = tonumber(ARGV[3]) or 0
if slot > 0 and now_us > slot + tonumber(ARGV[4]) then return {'late', deadline, now, now_us} end
redis.call('HSET', KEYS[1], 'sent_at_ms', now, 'sends', (tonumber(f[4] or '0') or 0) + 1, 'updated_ms', now,
  'late_us', math.max(0, now_us - slot))
return {'ok', deadline, now, now_us}
