-- Everything a pre-trade risk check reads, in one round trip (common/risk.py; read only).
-- KEYS[1] the account's run-time limits hash   KEYS[2] the strategy's run-time limits hash
-- KEYS[3] bg:ltp (EXCHANGE:SYMBOL -> last price)   KEYS[4] the account's positions hash
-- KEYS[5] the account's open-orders set (risk_open)   KEYS[6] the rate scope's sorted set (risk_rate)
-- ARGV[1] the order's EXCHANGE:SYMBOL   ARGV[2] '1' when the file's limits need the positions
-- ARGV[3] '1' when the order has a strategy (else KEYS[2] is not read)   ARGV[4] the rate window in ms
-- Returns {account overrides (flat field/value list), strategy overrides (flat), last price ('' none),
--          positions (flat field/JSON list; empty unless needed), their last prices ('' none, in the
--          positions' order), open orders, orders let through within the window, now_ms}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local acct = redis.call('HGETALL', KEYS[1])
local strat = {}
if ARGV[3] == '1' then strat = redis.call('HGETALL', KEYS[2]) end
local need = ARGV[2] == '1'
if not need then
  for _, h in ipairs({KEYS[1], ARGV[3] == '1' and KEYS[2] or nil}) do
    if redis.call('HEXISTS', h, 'max_position') == 1 or redis.call('HEXISTS', h, 'max_daily_loss') == 1 then
      need = true
    end
  end
end
local positions, prices = {}, {}
if need then
  positions = redis.call('HGETALL', KEYS[4])
  local names = {}
  for i = 1, #positions, 2 do
    -- a position's field is EXCHANGE:SYMBOL:PRODUCT; its price is under EXCHANGE:SYMBOL
    names[#names + 1] = string.match(positions[i], '^(.*):[^:]*$') or positions[i]
  end
  if #names > 0 then
    for i, p in ipairs(redis.call('HMGET', KEYS[3], unpack(names))) do prices[i] = p or '' end
  end
end
local ltp = redis.call('HGET', KEYS[3], ARGV[1]) or ''
local open = redis.call('SCARD', KEYS[5])
local minute = redis.call('ZCOUNT', KEYS[6], '(' .. (now - tonumber(ARGV[4])), '+inf')
return {acct, strat, ltp, positions, prices, open, minute, now}
