-- After the broker's own rate-limit answer: make the class wait out the window, and count it.
-- KEYS[1] backoff key (value: us until which nothing may be sent)   bg:backoff:<account>:<class>
-- KEYS[2] stats hash of the account                                 bg:stats:<account>
-- ARGV[1] wait_us (how long from now)   ARGV[2] stats field to increment
-- Returns the backoff end in us (Redis time)
local t0 = redis.call('TIME')
local now = tonumber(t0[1]) * 1000000 + tonumber(t0[2])
local until_us = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if cur > until_us then until_us = cur end
redis.call('SET', KEYS[1], string.format('%d', until_us), 'PX', math.floor((until_us - now) / 1000) + 1000)
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
return until_us
