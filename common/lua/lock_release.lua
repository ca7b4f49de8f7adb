-- Release a lock taken with SET NX PX, only by its owner: a holder whose lock lapsed and was
-- taken by someone else must not delete the new owner's lock (common/lua/__init__.py: release_lock).
-- KEYS[1] the lock
-- ARGV[1] the owner's fence token (the value it set)
-- Returns 1 when deleted, else 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
