-- Take the order's modify lock, so that modifies of one order are applied one at a time, each
-- onto the request the previous one stored. A modify whose sequence is not newer than the last
-- applied one is stale (superseded, or this very modify delivered again): it must not be sent.
-- KEYS[1] order hash   KEYS[2] order-done list (unused)   KEYS[3] active-orders sorted set (unused)
-- KEYS[4] modify lock bg:modify-lock:<id> (value: the holder's token)
-- ARGV[1] token (the holder's fencing token; the same token takes its own lock again)
-- ARGV[2] ttl_ms (covers the holder's slot wait, send and answer)   ARGV[3] seq (this modify's)
-- Returns {verdict, last applied seq}; verdict: locked | busy (held by another) | stale | missing
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing', 0} end
local applied = tonumber(redis.call('HGET', KEYS[1], 'modify_applied_seq') or '0') or 0
if tonumber(ARGV[3]) <= applied then return {'stale', applied} end
local holder = redis.call('GET', KEYS[4])
if holder and holder ~= ARGV[1] then return {'busy', applied} end
redis.call('SET', KEYS[4], ARGV[1], 'PX', tonumber(ARGV[2]))
return {'locked', applied}
