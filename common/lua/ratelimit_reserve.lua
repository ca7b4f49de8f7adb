-- Reserve the earliest request slot that keeps EVERY sliding window of an endpoint class within
-- its cap (e.g. 3/s + 200/min + 5000/day), on Redis server time, shared by every worker.
-- Slots are handed out at or after the latest recorded one, so a new slot t is safe for a window (count N,
-- length P) exactly when the N-th latest slot is at or before t - P; the margin is added so a
-- request that arrives a few ms late (jitter) still lands inside its window at the broker.
-- KEYS[1] sorted set of reserved slots (member: the slot in us; score: when it counts, in us:
--         the slot, or later once confirmed by ratelimit_confirm.lua)   bg:limit:<account>:<class>
-- KEYS[2] backoff key (value: us until which nothing may be sent)           bg:backoff:<account>:<class>
-- ARGV[1] margin_us   ARGV[2] deadline_us (0 = none: a later slot is refused, not reserved)
-- ARGV[3] horizon_us (0 = urgent: take the earliest slot however far). An ordinary request
--         (horizon > 0) does not reserve a slot further than horizon_us away, nor a future slot
--         while another future reservation is pending: it waits and asks again, so at most one
--         ordinary reservation is ever ahead of an urgent request (a cancel is never stuck
--         behind a burst of entries).
-- ARGV[4] confirmed_margin_us: the margin after a CONFIRMED slot (score moved past its member by
--         ratelimit_confirm.lua: the score is then an upper bound of when the broker counted it, so
--         only sub-ms rounding is left to cover; an unconfirmed slot is still in flight or lost, and
--         its request may reach the broker up to the full margin after its slot)
-- ARGV[5], ARGV[6], ... pairs of (count, period_us), one pair per window
-- Returns {verdict, slot_us, wait_us, now_us}; verdict: ok (reserved: wait_us until the slot) |
--   later (not reserved: ask again in wait_us) | deadline (not reserved: no slot before it)
local t0 = redis.call('TIME')
local now = tonumber(t0[1]) * 1000000 + tonumber(t0[2])
local margin, deadline, horizon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local confirmed_margin = tonumber(ARGV[4])
local max_period = 0
for i = 5, #ARGV, 2 do
  local p = tonumber(ARGV[i + 1])
  if p > max_period then max_period = p end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', now - max_period - margin))
local t = now
local backoff = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if backoff > t then t = backoff end
local last = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if last[2] and tonumber(last[2]) + 1 > t then t = tonumber(last[2]) + 1 end
for i = 5, #ARGV, 2 do
  local count, period = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local nth = redis.call('ZREVRANGE', KEYS[1], count - 1, count - 1, 'WITHSCORES')
  if nth[2] then
    local score = tonumber(nth[2])
    local m = margin
    if score ~= tonumber(nth[1]) then m = confirmed_margin end
    if score + period + m > t then t = score + period + m end
  end
end
if deadline > 0 and t > deadline then return {'deadline', t, t - now, now} end
if horizon > 0 and t > now then
  local pending = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf', 'LIMIT', 0, 1)
  if t - now > horizon then return {'later', t, t - now - horizon, now} end
  if pending[1] then
    local wait = tonumber(redis.call('ZSCORE', KEYS[1], pending[1])) - now
    return {'later', t, wait, now}
  end
end
local member = string.format('%d', t)
redis.call('ZADD', KEYS[1], t, member)
redis.call('PEXPIRE', KEYS[1], math.floor((t - now + max_period + margin) / 1000) + 1000)
return {'ok', t, t - now, now}
