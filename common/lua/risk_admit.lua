-- The worker's authoritative risk step, atomic across every worker and host: let an order through
-- only within max_open_orders (per account) and max_orders_per_minute (per rate scope), and record
-- it in both (run when either limit is in force; the order scripts count OPEN orders anyway). An order
-- let through before (a resend after a reconcile) is neither counted nor refused again.
-- Preceded by the order scripts' generated constants (TERMINAL; common/orderscripts.py prelude).
-- KEYS[1] the account's open-orders set (risk_open)   KEYS[2] the rate scope's sorted set (risk_rate)
-- KEYS[3] the account's stats hash (bg:stats:<account>)
-- ARGV[1] client_order_id   ARGV[2] max_open_orders ('' none)   ARGV[3] max_orders_per_minute ('' none)
-- ARGV[4] the rate window in ms   ARGV[5] the order hash key prefix (bg:order:)
-- Returns {verdict, count, limit}: verdict 'ok' (count: open orders now) or the limit refused
-- ('max_open_orders' / 'max_orders_per_minute', count: what it found), counted in the stats.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local window = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local function refuse(limit, n, max)
  redis.call('HINCRBY', KEYS[3], 'risk_refused', 1)
  redis.call('HINCRBY', KEYS[3], 'risk_refused:' .. limit, 1)
  return {limit, n, max}
end
if ARGV[2] ~= '' and redis.call('SISMEMBER', KEYS[1], id) == 0 then
  local max = tonumber(ARGV[2])
  local n = redis.call('SCARD', KEYS[1])
  if n >= max then
    -- Before refusing, drop members already settled or gone (their removal was missed, e.g. the
    -- order expired from Redis): the count stays exact, at a cost bounded by the set's size.
    for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
      local s = redis.call('HGET', ARGV[5] .. m, 'state')
      if not s or TERMINAL[s] then redis.call('SREM', KEYS[1], m) end
    end
    n = redis.call('SCARD', KEYS[1])
  end
  if n >= max then return refuse('max_open_orders', n, max) end
end
local counted = redis.call('ZSCORE', KEYS[2], id)
if ARGV[3] ~= '' and not counted then
  local max = tonumber(ARGV[3])
  local n = redis.call('ZCARD', KEYS[2])
  if n >= max then return refuse('max_orders_per_minute', n, max) end
end
redis.call('SADD', KEYS[1], id)
if not counted then redis.call('ZADD', KEYS[2], now, id) end
redis.call('PEXPIRE', KEYS[2], window + 1000)
return {'ok', redis.call('SCARD', KEYS[1]), 0}
