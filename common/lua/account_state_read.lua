-- Read one kind of an account's state in one round trip (common/accountstate.py:read): the
-- snapshot's fields, its times, Redis time, and, for positions, each one's last price from the
-- feed (the instrument is the field name without its product: EXCHANGE:SYMBOL:PRODUCT).
-- KEYS[1] the snapshot hash (bg:acct:<account>:<kind>)   KEYS[2] its meta hash   KEYS[3] bg:ltp
-- ARGV[1] kind   ARGV[2] '1' to add the positions' last prices
-- Returns {flat field/value list, at_ms, pushed_ms, now_ms, prices} where prices is a list
-- aligned with the fields ('' where the feed has none; empty unless asked)
local rows = redis.call('HGETALL', KEYS[1])
local at = redis.call('HGET', KEYS[2], ARGV[1] .. '_at_ms') or '0'
local pushed = redis.call('HGET', KEYS[2], ARGV[1] .. '_pushed_ms') or '0'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prices = {}
if ARGV[2] == '1' and #rows > 0 then
  local names = {}
  for i = 1, #rows, 2 do
    names[#names + 1] = string.match(rows[i], '^(.*):[^:]*$') or rows[i]
  end
  local got = redis.call('HMGET', KEYS[3], unpack(names))
  for i = 1, #names do prices[i] = got[i] or '' end
end
return {rows, at, pushed, now, prices}
