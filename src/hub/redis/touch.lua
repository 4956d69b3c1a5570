-- A reader on this node is still open (`keep`), or one closed (`close`):
-- ARGV[7] = member, ARGV[8] = `keep` or `close`, ARGV[9..11] = the
-- signals its readers here delivered (`delivered_elsewhere`). Resets the
-- member's idle clock.
local m = ARGV[7]
local s = load_member(m)
if not s then return {'gone', local_wakes, dropped} end
if delivered_elsewhere(s, ARGV[9], ARGV[10], ARGV[11]) then save(s) end
redis.call('HSET', mkey(m), 'seen', now_ms())
if ARGV[8] == 'close' and redis.call('HINCRBY', nkey(m), NODE, -1) <= 0 then
  redis.call('HDEL', nkey(m), NODE)
end
return {'ok', local_wakes, dropped}
