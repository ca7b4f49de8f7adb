-- Create an order in state NEW, once. Its deadline comes from Redis server time.
-- KEYS[1] order hash bg:order:<id>
-- KEYS[2] order-done list (unused here; kept so every order script shares the key layout)
-- KEYS[3] active-orders sorted set (score = deadline ms), the sweeper's index
-- KEYS[4] the account's orders, bg:orders:account:<account> (score = created ms), what strategies
--         list; trimmed here by the retention, so it holds about as long as settled orders live
-- ARGV[1] account   ARGV[2] request (Order JSON)   ARGV[3] deadline in ms from now   ARGV[4] source
-- ARGV[5] nonce of this create call: the client library retries a command whose reply was lost,
--         and the retry of our own create must succeed, not report the id as taken
-- Returns {created (1|0), deadline_ms, now_ms}
local now = now_ms()
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'create_nonce') == ARGV[5] then
    return {1, tonumber(redis.call('HGET', KEYS[1], 'deadline_ms') or '0'), now}
  end
  return {0, tonumber(redis.call('HGET', KEYS[1], 'deadline_ms') or '0'), now}
end
local deadline = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'NEW', 'account', ARGV[1], 'request', ARGV[2],
  'deadline_ms', deadline, 'created_ms', now, 'updated_ms', now, 'filled_quantity', 0,
  'broker_order_id', '', 'error', '', 'broker_status', '', 'create_nonce', ARGV[5])
push_history('NEW', now, ARGV[4])
redis.call('ZADD', KEYS[3], deadline, order_id())
-- Scored in ms with the microseconds as its fraction, so two orders created in one millisecond
-- still list in the order Redis created them (a score tie would sort by id instead).
local t = redis.call('TIME')
local us = tonumber(t[2])
redis.call('ZADD', KEYS[4], string.format('%d.%03d', tonumber(t[1]) * 1000 + math.floor(us / 1000), us % 1000), order_id())
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - RETENTION_MS))
return {1, deadline, now}
