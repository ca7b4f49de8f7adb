-- Store a new token for an account: bump the version, replace the hash, set its expiry and
-- announce it, atomically, so no reader can see the new fields with the old version or the
-- other way round (common/tokens.py:store_token).
-- KEYS[1] token hash (bg:token:<account>)   KEYS[2] the account's version counter (never expires)
-- ARGV[1] expires_at_ms (absolute)   ARGV[2] channel (bg:token-changed)   ARGV[3] account
-- ARGV[4..] field, value, ... of the new token
-- Returns the new version
local v = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', v, unpack(ARGV, 4))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. v)
return v
