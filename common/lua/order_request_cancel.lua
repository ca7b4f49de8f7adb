-- Ask for an order to be cancelled, durably. An order not yet sent is cancelled here, atomically
-- against mark_sent (which then finds it no longer SENDING). One that may be in flight, or is at
-- the broker, keeps a `cancel_requested_ms` mark that every later send, resend and redrive honours
-- (mark_sent and claim refuse it), and whoever learns its broker order id cancels it there.
-- KEYS[1] order hash   KEYS[2] order-done list   KEYS[3] active-orders sorted set
-- ARGV[1] source
-- Returns {verdict, state}; verdict is
--   cancelled  it was never sent and never will be: now CANCELLED
--   requested  it may be at the broker: the mark is set (or was already)
--   done       already terminal: nothing to do
--   missing    no such order
local now = now_ms()
local f = redis.call('HMGET', KEYS[1], 'state', 'sent_at_ms', 'cancel_requested_ms')
local state = f[1]
if not state then return {'missing', ''} end
if TERMINAL[state] then
  -- Our own verdict that it is not at the broker may yet be overturned by a sighting of it there
  -- (order_apply.lua): keep the cancel, so that the order is then cancelled at the broker.
  local ours = OURS[state] or (state == 'CANCELLED' and (redis.call('HGET', KEYS[1], 'broker_order_id') or '') == '')
  if ours and (f[3] or '') == '' then redis.call('HSET', KEYS[1], 'cancel_requested_ms', now) end
  return {'done', state}
end
if state == 'NEW' or (state == 'SENDING' and (f[2] or '') == '') then
  settle(order_id(), 'CANCELLED', ARGV[1], NOT_SENT_CANCEL, now)
  return {'cancelled', 'CANCELLED'}
end
if (f[3] or '') == '' then
  redis.call('HSET', KEYS[1], 'cancel_requested_ms', now, 'updated_ms', now)
  -- A resting order is due at the sweeper soon, not at its hourly look: it must be cancelled at
  -- the broker if this cancel's task cannot. (One in flight keeps its deadline as its due time.)
  if state == 'OPEN' then redis.call('ZADD', KEYS[3], 'XX', now + CANCEL_RECHECK_MS, order_id()) end
end
return {'requested', state}
