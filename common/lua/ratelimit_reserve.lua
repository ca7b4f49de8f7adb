-- Reserve the earliest request slot that keeps EVERY sliding window of every budget the request
-- counts in within its cap (e.g. 3/s + 200/min + 5000/day of its endpoint class, and, at a broker
-- whose caps span all its endpoints, the windows of that shared budget too), on Redis server
-- time, shared by every worker. One script over every budget, so the reservation stays atomic
-- and costs one round trip however many budgets there are.
-- Slots are handed out at or after the latest recorded one of every budget, so a new slot t is
-- safe for a window (count N, length P) of a budget exactly when that budget's N-th latest slot
-- is at or before t - P; the margin is added so a request that arrives a few ms late (jitter)
-- still lands inside its window at the broker. The slot is recorded in every budget.
-- KEYS, two per budget (budget b: KEYS[2b-1], KEYS[2b]); the endpoint class's own budget first:
--   KEYS[2b-1] sorted set of reserved slots (member: the slot in us; score: when it counts, in us:
--              the slot, or later once confirmed by ratelimit_confirm.lua)  bg:limit:<scope>:<class>
--   KEYS[2b]   backoff key (value: us until which nothing may be sent)      bg:backoff:<scope>:<class>
-- ARGV[1] margin_us   ARGV[2] deadline_us (0 = none: a later slot is refused, not reserved)
-- ARGV[3] horizon_us (0 = urgent: take the earliest slot however far). An ordinary request
--         (horizon > 0) does not reserve a slot further than horizon_us away, nor a future slot
--         while another future reservation is pending in any of its budgets: it waits and asks
--         again, so at most one ordinary reservation is ever ahead of an urgent request (a
--         cancel is never stuck behind a burst of entries).
-- ARGV[4] confirmed_margin_us: the margin after a CONFIRMED slot (score moved past its member by
--         ratelimit_confirm.lua: the score is then an upper bound of when the broker counted it, so
--         only sub-ms rounding is left to cover; an unconfirmed slot is still in flight or lost, and
--         its request may reach the broker up to the full margin after its slot)
-- ARGV[5], ...: per budget, in KEYS order: the number of its windows n, then n pairs of
--         (count, period_us)
-- Returns {verdict, slot_us, wait_us, now_us}; verdict: ok (reserved: wait_us until the slot) |
--   later (not reserved: ask again in wait_us) | deadline (not reserved: no slot before it)
local t0 = redis.call('TIME')
local now = tonumber(t0[1]) * 1000000 + tonumber(t0[2])
local margin, deadline, horizon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local confirmed_margin = tonumber(ARGV[4])
local nbudgets = #KEYS / 2
local windows, max_period = {}, {}
local a = 5
for b = 1, nbudgets do
  local n = tonumber(ARGV[a])
  a = a + 1
  local w, mp = {}, 0
  for j = 1, n do
    local count, period = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    a = a + 2
    w[j] = {count, period}
    if period > mp then mp = period end
  end
  windows[b], max_period[b] = w, mp
end
local t = now
for b = 1, nbudgets do
  local log = KEYS[2 * b - 1]
  redis.call('ZREMRANGEBYSCORE', log, '-inf', '(' .. string.format('%d', now - max_period[b] - margin))
  local backoff = tonumber(redis.call('GET', KEYS[2 * b]) or '0') or 0
  if backoff > t then t = backoff end
  local last = redis.call('ZREVRANGE', log, 0, 0, 'WITHSCORES')
  if last[2] and tonumber(last[2]) + 1 > t then t = tonumber(last[2]) + 1 end
  for _, w in ipairs(windows[b]) do
    local count, period = w[1], w[2]
    local nth = redis.call('ZREVRANGE', log, count - 1, count - 1, 'WITHSCORES')
    if nth[2] then
      local score = tonumber(nth[2])
      local m = margin
      if score ~= tonumber(nth[1]) then m = confirmed_margin end
      if score + period + m > t then t = score + period + m end
    end
  end
end
if deadline > 0 and t > deadline then return {'deadline', t, t - now, now} end
if horizon > 0 and t > now then
  if t - now > horizon then return {'later', t, t - now - horizon, now} end
  for b = 1, nbudgets do
    local log = KEYS[2 * b - 1]
    local pending = redis.call('ZRANGEBYSCORE', log, '(' .. string.format('%d', now), '+inf', 'LIMIT', 0, 1)
    if pending[1] then
      return {'later', t, tonumber(redis.call('ZSCORE', log, pending[1])) - now, now}
    end
  end
end
-- t is after every recorded score of every budget, and a member never exceeds its score, so
-- the member is new in each log.
local member = string.format('%d', t)
for b = 1, nbudgets do
  local log = KEYS[2 * b - 1]
  redis.call('ZADD', log, t, member)
  redis.call('PEXPIRE', log, math.floor((t - now + max_period[b] + margin) / 1000) + 1000)
end
return {'ok', t, t - now, now}
