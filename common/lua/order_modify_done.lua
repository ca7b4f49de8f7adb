-- Record a modify's outcome and release the order's modify lock, fenced: only the current holder
-- may write (a holder whose lock expired, and may have been taken over, writes nothing).
-- KEYS[1] order hash   KEYS[2] order-done list (unused)   KEYS[3] active-orders sorted set (unused)
-- KEYS[4] modify lock bg:modify-lock:<id>
-- ARGV[1] token   ARGV[2] seq   ARGV[3] JSON object of fields to set (strings; never state)
-- ARGV[4] '1' when the modify was sent (its seq becomes the last applied one; the recorded
--         changes of every seq up to it are now in the stored request: cleaned up), '0' when it
--         did not happen (its own recorded changes are discarded, so no later modify carries a
--         change the broker refused or that was never sent), 'discard' to discard them without
--         holding the lock (a modify that never got it), nothing else written
-- Returns 1 when recorded (and released), 0 when fenced off (nothing written)
local seq = tonumber(ARGV[2])
local function applied_seq()
  return tonumber(redis.call('HGET', KEYS[1], 'modify_applied_seq') or '0') or 0
end
if ARGV[4] == 'discard' then
  -- Only a seq not yet applied: an applied one's changes are already in the request.
  if seq > applied_seq() then redis.call('HDEL', KEYS[1], 'modify_changes:' .. seq) end
  return 1
end
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[4])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[4] == '1' then
  local applied = applied_seq()
  if seq > applied then
    redis.call('HSET', KEYS[1], 'modify_applied_seq', seq)
    for s = applied + 1, seq do redis.call('HDEL', KEYS[1], 'modify_changes:' .. s) end
  end
else
  redis.call('HDEL', KEYS[1], 'modify_changes:' .. seq)
end
for k, v in pairs(cjson.decode(ARGV[3])) do
  if k ~= 'state' then redis.call('HSET', KEYS[1], k, v) end
end
return 1
