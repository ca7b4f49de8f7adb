-- Set bookkeeping fields of an existing order without touching its state (cancel/modify
-- outcomes, the request after a modification).
-- KEYS[1] order hash   KEYS[2] order-done list (unused)   KEYS[3] active-orders sorted set (unused)
-- ARGV[1] JSON object of fields to set (strings)
-- Returns 1 when the order exists, else 0
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for k, v in pairs(cjson.decode(ARGV[1])) do redis.call('HSET', KEYS[1], k, v) end
return 1
