-- Record a modify's outcome and release the order's modify lock, fenced: only the current holder
-- may write (a holder whose lock expired, and may have been taken over, writes nothing).
-- KEYS[1] order hash   KEYS[2] order-done list (unused)   KEYS[3] active-orders sorted set (unused)
-- KEYS[4] modify lock bg:modify-lock:<id>
-- ARGV[1] token   ARGV[2] seq   ARGV[3] JSON object of fields to set (strings; never state)
-- ARGV[4] '1' when the modify was sent (its seq becomes the last applied one), else '0'
-- Returns 1 when recorded (and released), 0 when fenced off (nothing written)
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[4])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local seq = tonumber(ARGV[2])
if ARGV[4] == '1' then
  local applied = tonumber(redis.call('HGET', KEYS[1], 'modify_applied_seq') or '0') or 0
  if seq > applied then redis.call('HSET', KEYS[1], 'modify_applied_seq', seq) end
end
for k, v in pairs(cjson.decode(ARGV[3])) do
  if k ~= 'state' then redis.call('HSET', KEYS[1], k, v) end
end
return 1
