-- Record a used slot at the time its request is known to have reached the broker: when the
-- answer (or the failure) came back, on Redis time. The broker counted the request somewhere
-- between the send and the answer, so the slots reserved after this count from an upper bound
-- of its arrival, whatever the network and the broker's own queue did to it. Never earlier.
-- KEYS[1] sorted set of reserved slots   bg:limit:<account>:<class>
-- A confirmed slot's score differs from its member, which is how ratelimit_reserve.lua tells it
-- from one still in flight. When no answer came back (a timeout, a reset), the request may still
-- be on its way: it counts from now plus ARGV[2] (the full margin), a pessimistic bound.
-- ARGV[1] slot_us (the member)   ARGV[2] us to add to now (0 when an answer came back)
-- Returns the slot's time now (us), or 0 when the slot is no longer recorded
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2]) + (tonumber(ARGV[2]) or 0)
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur then return 0 end
if now_us > tonumber(cur) then
  redis.call('ZADD', KEYS[1], 'XX', now_us, ARGV[1])
  return now_us
end
return tonumber(cur)
