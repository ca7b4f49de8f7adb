-- Put a halt in force (common/safety.py), stamped with the Redis time of the write itself. The
-- send gate (order_mark_sent.lua) is atomic too, so every entry it let go carries a sent_at_ms
-- at or before this stamp and none after: "sent after the halt" is exact, whatever the caller
-- did between reading a clock and writing (loading the accounts file takes ~0.2 s).
-- KEYS[1..n] the halt hashes to set (accounts' own, or the halt of every account)
-- ARGV[1] reason   ARGV[2] by   ARGV[3] square_off ('1' or '')
-- ARGV[4] the channel to announce it on   ARGV[5] the announcement
-- Returns the halt's time in ms (Redis time)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, k in ipairs(KEYS) do
  redis.call('HSET', k, 'reason', ARGV[1], 'at_ms', now, 'by', ARGV[2], 'square_off', ARGV[3])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return now
