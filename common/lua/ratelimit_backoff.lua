-- After the broker's own rate-limit answer: make the class wait out the window, and count it.
-- The window that was exceeded is the one our own slot log shows full (count requests counted in
-- its last period, the refused one included): back off until it frees (the latest such end, when
-- several are full). When none is full by our log (the broker counted requests we did not see),
-- back off for the default wait.
-- The budget is the outermost one the request counted in (the shared budget when the broker has
-- one: its rate-limit answer is about the budget it enforces), see ratelimit.Limiter.
-- KEYS[1] backoff key (value: us until which nothing may be sent)   bg:backoff:<scope>:<class>
-- KEYS[2] stats hash of the account                                 bg:stats:<account>
-- KEYS[3] sorted set of reserved slots (score: when it counts, us)  bg:limit:<scope>:<class>
-- ARGV[1] default wait_us (how long from now)   ARGV[2] stats field to increment   ARGV[3] margin_us
-- ARGV[4], ARGV[5], ... pairs of (count, period_us), one pair per window
-- Returns the backoff end in us (Redis time)
local t0 = redis.call('TIME')
local now = tonumber(t0[1]) * 1000000 + tonumber(t0[2])
local margin = tonumber(ARGV[3]) or 0
local window_end = 0
for i = 4, #ARGV, 2 do
  local count, period = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  -- the count-th latest request counted at or before now, if the window (now - period, now] holds count
  local nth = redis.call('ZREVRANGEBYSCORE', KEYS[3], string.format('%d', now),
    '(' .. string.format('%d', now - period), 'WITHSCORES', 'LIMIT', count - 1, 1)
  if nth[2] then
    local frees = tonumber(nth[2]) + period + margin
    if frees > window_end then window_end = frees end
  end
end
local until_us = now + tonumber(ARGV[1])
if window_end > now then until_us = window_end end
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if cur > until_us then until_us = cur end
redis.call('SET', KEYS[1], string.format('%d', until_us), 'PX', math.floor((until_us - now) / 1000) + 1000)
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
return until_us
