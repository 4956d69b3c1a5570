-- Reads after a cursor: ARGV[7] = member, ARGV[8] = cursor, ARGV[9] = the
-- stream generation (empty for a poll). Inbox::read_after. A member gone
-- may have left its inbox for its readers (`leave`): they read the rest
-- of it (`last`), and end.
local m, generation = ARGV[7], ARGV[9]
if not is_member(m) then
  local rest = redis.call('XRANGE', ikey(m), '(0-' .. ARGV[8], '+')
  if #rest == 0 then return {'gone', local_wakes, dropped} end
  return {'last', local_wakes, dropped, id_of(rest[#rest]), rest}
end
if generation ~= '' and redis.call('HGET', mkey(m), 'gen') ~= generation then
  return {'gone', local_wakes, dropped}
end
local s = load(m)
local after = math.min(tonumber(ARGV[8]), s.last)
local entries = redis.call('XRANGE', ikey(m), '(0-' .. after, '+')
if s.last > s.delivered then
  -- Every held event is now delivered.
  s.delivered, s.ulen, s.ubytes = s.last, 0, 0
  save(s)
end
return {'ok', local_wakes, dropped, s.last, entries}
