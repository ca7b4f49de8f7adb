-- Record that the sweeper sends an unsent order's message again, once per observed redrive count:
-- a NEW order whose message was lost, or (ARGV[4] given) an order claimed by a worker that died
-- before sending it (SENDING, nothing sent, still held by that claim's attempt).
-- KEYS[1] order hash   KEYS[2] order-done list   KEYS[3] active-orders sorted set
-- ARGV[1] the redrives field as the caller saw it ('' = never)   ARGV[2] source   ARGV[3] message
-- ARGV[4] the dead claim's attempt ('' = the order must be NEW)
-- Returns 1 when recorded (the caller sends the message again), else 0.
local now = now_ms()
local f = redis.call('HMGET', KEYS[1], 'state', 'redrives', 'deadline_ms', 'sent_at_ms', 'attempt',
  'cancel_requested_ms')
local state = f[1]
if ARGV[4] == '' then
  if state ~= 'NEW' then return 0 end
elseif state ~= 'SENDING' or (f[4] or '') ~= '' or f[5] ~= ARGV[4] then
  return 0
end
if (f[2] or '') ~= ARGV[1] or (f[6] or '') ~= '' then return 0 end
if now >= (tonumber(f[3] or '0') or 0) then return 0 end
redis.call('HINCRBY', KEYS[1], 'redrives', 1)
redis.call('HSET', KEYS[1], 'redriven_ms', now, 'updated_ms', now)
push_history(state, now, ARGV[2], ARGV[3])
return 1
