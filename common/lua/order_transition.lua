-- Compare-and-set move of an order by the table in common/orderstate.py (worker outcomes,
-- the sweeper, reconciliation results). Moving to the current state only sets fields
-- (e.g. a re-claim of SENDING for a resend after reconciliation).
-- KEYS[1] order hash   KEYS[2] order-done list   KEYS[3] active-orders sorted set
-- ARGV[1] to_state
-- ARGV[2] allowed from-states, space separated ('' = any state the table allows)
-- ARGV[3] cas field ('' = none)   ARGV[4] the value that field must hold ('' matches missing)
-- ARGV[5] JSON object of extra fields to set (strings)   ARGV[6] source   ARGV[7] message
-- Returns {moved (1|0), state after}
local now = now_ms()
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {0, ''} end
local to = ARGV[1]
if ARGV[2] ~= '' then
  local ok = false
  for s in string.gmatch(ARGV[2], '%S+') do if s == cur then ok = true end end
  if not ok then return {0, cur} end
end
if ARGV[3] ~= '' then
  local v = redis.call('HGET', KEYS[1], ARGV[3]) or ''
  if v ~= ARGV[4] then return {0, cur} end
end
if to ~= cur and not TRANSITIONS[cur][to] then return {0, cur} end
local extra = cjson.decode(ARGV[5])
for k, v in pairs(extra) do redis.call('HSET', KEYS[1], k, v) end
if to == cur then
  redis.call('HSET', KEYS[1], 'updated_ms', now)
  return {1, cur}
end
settle(order_id(), to, ARGV[6], ARGV[7], now)
return {1, to}
