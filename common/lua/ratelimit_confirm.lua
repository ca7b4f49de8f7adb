-- Record a used slot at the time its request is known to have reached the broker: when the
-- answer (or the failure) came back, on Redis time. The broker counted the request somewhere
-- between the send and the answer, so the slots reserved after this count from an upper bound
-- of its arrival, whatever the network and the broker's own queue did to it. Never earlier.
-- KEYS[1], ... the sorted sets of reserved slots of every budget the slot was reserved in
--              (bg:limit:<scope>:<class>, and the shared budget's), moved together
-- A confirmed slot's score differs from its member, which is how ratelimit_reserve.lua tells it
-- from one still in flight. When no answer came back (a timeout, a reset), the request may still
-- be on its way: it counts from now plus ARGV[2] (the full margin), a pessimistic bound.
-- ARGV[1] slot_us (the member)   ARGV[2] us to add to now (0 when an answer came back)
-- Returns the slot's time now in the first log that still records it (us), or 0 when none does
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2]) + (tonumber(ARGV[2]) or 0)
local result = 0
for i = 1, #KEYS do
  local cur = redis.call('ZSCORE', KEYS[i], ARGV[1])
  if cur then
    local at = tonumber(cur)
    if now_us > at then
      redis.call('ZADD', KEYS[i], 'XX', now_us, ARGV[1])
      at = now_us
    end
    if result == 0 then result = at end
  end
end
return result
