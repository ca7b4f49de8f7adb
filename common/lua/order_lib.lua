-- Helpers shared by the order scripts (prepended to each by common/orderscripts.py, after the
-- generated constants TRANSITIONS, RANK, TERMINAL, WAKE, OURS, BROKER_SEEN, CHANNEL_PREFIX, DONE_TTL_S,
-- OPEN_RECHECK_MS, CANCEL_RECHECK_MS, NOT_SENT_CANCEL, HISTORY_MAX, RETENTION_MS, RISK_OPEN_PREFIX that come
-- from common/orderstate.py and common/orderscripts.py, so the state table has one source).
-- Convention: KEYS[1] order hash, KEYS[2] order-done list, KEYS[3] active-orders sorted set.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- History is capped at HISTORY_MAX entries: the first (how the order began) and the latest
-- HISTORY_MAX - 1. Each entry is its own field `history:<n>` (`history_n` counts every entry ever
-- pushed), so a push is one HINCRBY, one HSET and at most one HDEL: never a decode and re-encode
-- of the whole list, which an order with many partial fills would pay on every update.
-- An order stored before the cap keeps its JSON list in `history`; it no longer grows, and
-- common/orderstore.py reads it before the numbered entries.
local function push_history(state, at_ms, source, message)
  local n = redis.call('HINCRBY', KEYS[1], 'history_n', 1)
  redis.call('HSET', KEYS[1], 'history:' .. n,
    cjson.encode({state = state, at_ms = at_ms, source = source, message = message}))
  local drop = n - (HISTORY_MAX - 1)
  if drop > 1 then redis.call('HDEL', KEYS[1], 'history:' .. drop) end
end

-- The order as a normalized OrderUpdate dict (what strategies receive on orders:<account>).
local function snapshot(id, source, message)
  local f = redis.call('HMGET', KEYS[1], 'account', 'broker_order_id', 'state', 'filled_quantity',
    'pending_quantity', 'average_price', 'broker_status', 'error', 'exchange_ts')
  local avg = cjson.null
  if f[6] and f[6] ~= '' then avg = f[6] end
  return {
    account = f[1] or '', client_order_id = id, broker_order_id = f[2] or '', state = f[3] or '',
    filled_quantity = tonumber(f[4] or '0') or 0, pending_quantity = tonumber(f[5] or '0') or 0,
    average_price = avg, broker_status = f[7] or '', message = message or f[8] or '',
    exchange_ts = f[9] or '', source = source,
  }
end

-- After a state change: wake handles, publish, leave the sweeper's index when terminal. An OPEN
-- order stays indexed but is due again only after OPEN_RECHECK_MS (a resting order is normal;
-- one that hears nothing for that long is reconciled), so the sweeper does not re-read it.
-- A settled order expires RETENTION_MS later (Redis holds everything in memory; strategies read
-- it, and the account's index lists it, until then); set here, in the script that settles it, so
-- no settled order can miss its expiry. A live one never expires: when a broker sighting revives
-- an order we had settled (order_apply.lua's overturn), it loses its expiry again, since money
-- may be at risk. (The wake-up list keeps its own short TTL.)
-- The account's open-orders set (common/risk.py's max_open_orders; the worker's risk step adds an
-- order as it lets it through) loses a settled order here, and regains one a broker sighting
-- shows open (a revived verdict, or an order from before the set existed). Its key is built from
-- the order's account, as the channel is: brokergate runs on one Redis, not a cluster.
local function after_change(id, state, publish_json, at_ms)
  local account = redis.call('HGET', KEYS[1], 'account')
  if account then
    if TERMINAL[state] then
      redis.call('SREM', RISK_OPEN_PREFIX .. account, id)
    elseif state == 'OPEN' or state == 'UNKNOWN' then
      redis.call('SADD', RISK_OPEN_PREFIX .. account, id)
    end
  end
  if WAKE[state] then
    redis.call('RPUSH', KEYS[2], state)
    redis.call('EXPIRE', KEYS[2], DONE_TTL_S)
  end
  if TERMINAL[state] then
    redis.call('ZREM', KEYS[3], id)
    redis.call('PEXPIRE', KEYS[1], RETENTION_MS)
  else
    redis.call('PERSIST', KEYS[1])
  end
  if state == 'OPEN' then
    -- A resting order hears from the sweeper hourly; one whose cancel is pending, soon.
    local recheck = OPEN_RECHECK_MS
    if (redis.call('HGET', KEYS[1], 'cancel_requested_ms') or '') ~= '' then recheck = CANCEL_RECHECK_MS end
    redis.call('ZADD', KEYS[3], 'XX', at_ms + recheck, id)
  end
  if account and publish_json then redis.call('PUBLISH', CHANNEL_PREFIX .. account, publish_json) end
end

-- Move the order to `state` (the caller checked the table), record it, tell everyone.
local function settle(id, state, source, message, at_ms)
  redis.call('HSET', KEYS[1], 'state', state, 'updated_ms', at_ms)
  if message and message ~= '' then redis.call('HSET', KEYS[1], 'error', message) end
  push_history(state, at_ms, source)
  after_change(id, state, cjson.encode(snapshot(id, source, message)), at_ms)
end

local function order_id()
  -- KEYS[1] is <prefix>order:<id>; the id is everything after the last ':'
  return string.match(KEYS[1], '([^:]+)$')
end

-- The pre-trade risk check's read (common/risk.py), read only. One source for the client's check
-- (risk_read.lua) and the worker's authoritative one, which rides in the claim (order_claim.lua),
-- so an order with no limit in force pays no round trip of its own for it. Key names come as
-- arguments (each script declares them in its own KEYS).
-- k: {the account's run-time limits hash, the strategy's (read only when it has one), bg:ltp,
--     the account's positions hash, its open-orders set (risk_open), the rate scope's sorted set (risk_rate)}
-- a: {the order's EXCHANGE:SYMBOL, '1' when the file's limits need the positions, '1' when the order
--     has a strategy, the rate window in ms}
-- Returns {account overrides (flat field/value list), strategy overrides (flat), last price ('' none),
--          positions (flat field/JSON list; empty unless needed), their last prices ('' none, in the
--          positions' order), open orders, orders let through within the window, now_ms}
local function risk_read(k, a, now)
  local has_strat = a[3] == '1'
  local acct = redis.call('HGETALL', k[1])
  local strat = {}
  if has_strat then strat = redis.call('HGETALL', k[2]) end
  local need = a[2] == '1'
  if not need then
    -- A run-time override may set a limit that needs the positions though the file's do not.
    for _, h in ipairs({k[1], has_strat and k[2] or nil}) do
      if redis.call('HEXISTS', h, 'max_position') == 1 or redis.call('HEXISTS', h, 'max_daily_loss') == 1 then
        need = true
      end
    end
  end
  local positions, prices = {}, {}
  if need then
    positions = redis.call('HGETALL', k[4])
    local names = {}
    for i = 1, #positions, 2 do
      -- a position's field is EXCHANGE:SYMBOL:PRODUCT; its price is under EXCHANGE:SYMBOL
      names[#names + 1] = string.match(positions[i], '^(.*):[^:]*$') or positions[i]
    end
    if #names > 0 then
      for i, p in ipairs(redis.call('HMGET', k[3], unpack(names))) do prices[i] = p or '' end
    end
  end
  local ltp = redis.call('HGET', k[3], a[1]) or ''
  local open = redis.call('SCARD', k[5])
  local minute = redis.call('ZCOUNT', k[6], '(' .. (now - tonumber(a[4])), '+inf')
  return {acct, strat, ltp, positions, prices, open, minute, now}
end
