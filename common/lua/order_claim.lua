-- Claim an order for sending: NEW -> SENDING atomically, so only one worker may send it.
-- An entry of a halted account is refused here already (REJECTED with the halt's reason), before it waits for a limiter slot: a queue of entries behind a halt drains at once.
-- The send gate (order_mark_sent.lua) checks again, atomically with the send.
-- KEYS[1] order hash   KEYS[2] order-done list   KEYS[3] active-orders sorted set
-- KEYS[4] the account's halt hash   KEYS[5] the halt of every account
-- ARGV[1] attempt (a fresh random id of this delivery: the fencing token for mark_sent)
-- ARGV[2] source (worker name, for the history; kept as claimed_by for the sweeper's liveness check)
-- ARGV[3] '1' when the order is reduce_only (an exit: it flows while halted)
-- The worker's pre-trade risk read (order_lib.lua risk_read), made here when the claim is taken, so
-- the authoritative check (common/risk.py) costs the order no round trip of its own; given by the
-- worker, omitted by other callers (then nothing is read):
-- KEYS[6] the account's run-time limits hash   KEYS[7] the strategy's   KEYS[8] bg:ltp
-- KEYS[9] the account's positions hash   KEYS[10] its open-orders set   KEYS[11] the rate scope's sorted set
-- ARGV[4] the order's EXCHANGE:SYMBOL   ARGV[5] '1' when the file's limits need the positions
-- ARGV[6] '1' when the order has a strategy   ARGV[7] the rate window in ms
-- Returns {verdict, state, sent_at_ms, deadline_ms, now_ms[, risk read]}; the risk read (risk_read's
-- reply) only with verdict claimed and the risk keys given; verdict is
--   (a cancel requested meanwhile, never sent: now CANCELLED, verdict done)
--   claimed    this delivery owns the order (NEW, or SENDING that was never sent: a redelivery
--              of a message whose first worker died or was overtaken; the old attempt is fenced off)
--   expired    past its deadline before anything was sent: now EXPIRED
--   reconcile  SENDING after the request may have left, or UNKNOWN: look it up by tag first
--   done       already OPEN or terminal: nothing to do
--   halted     the account is halted and the order is an entry: now REJECTED, never sent
--   missing    no such order
local now = now_ms()
local f = redis.call('HMGET', KEYS[1], 'state', 'sent_at_ms', 'deadline_ms', 'cancel_requested_ms')
local state, sent_at, deadline = f[1], f[2] or '', tonumber(f[3] or '0') or 0
if not state then return {'missing', '', 0, 0, now} end
local id = order_id()
if state == 'NEW' or (state == 'SENDING' and sent_at == '') then
  if (f[4] or '') ~= '' then
    settle(id, 'CANCELLED', ARGV[2], NOT_SENT_CANCEL, now)
    return {'done', 'CANCELLED', 0, deadline, now}
  end
  if now > deadline then
    settle(id, 'EXPIRED', ARGV[2], 'no slot before the deadline', now)
    return {'expired', 'EXPIRED', 0, deadline, now}
  end
  if ARGV[3] ~= '1' then
    local why = redis.call('HGET', KEYS[4], 'reason') or redis.call('HGET', KEYS[5], 'reason')
    if why then
      settle(id, 'REJECTED', ARGV[2], 'halted: ' .. why, now)
      return {'halted', 'REJECTED', 0, deadline, now}
    end
  end
  if state == 'NEW' then
    redis.call('HSET', KEYS[1], 'state', 'SENDING', 'attempt', ARGV[1], 'updated_ms', now, 'claimed_ms', now,
      'claimed_by', ARGV[2])
    push_history('SENDING', now, ARGV[2])
  else
    redis.call('HSET', KEYS[1], 'attempt', ARGV[1], 'updated_ms', now, 'claimed_ms', now, 'claimed_by', ARGV[2])
  end
  if #KEYS < 11 then return {'claimed', 'SENDING', 0, deadline, now} end
  return {'claimed', 'SENDING', 0, deadline, now, risk_read({KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]},
    {ARGV[4], ARGV[5], ARGV[6], ARGV[7]}, now)}
end
if state == 'SENDING' or state == 'UNKNOWN' then
  return {'reconcile', state, tonumber(sent_at) or 0, deadline, now}
end
return {'done', state, tonumber(sent_at) or 0, deadline, now}
