-- Opens a reader on this node: ARGV[7] = member, ARGV[8] = `stream` or
-- `poll`, ARGV[9] = Last-Event-ID or `after` (empty when not given).
local m, mode, given = ARGV[7], ARGV[8], ARGV[9]
if not is_member(m) then return {'unauthorized', local_wakes, dropped} end
local s = load(m)
local cursor, generation = 0, 0
if mode == 'stream' then
  generation = redis.call('HINCRBY', mkey(m), 'gen', 1)
  if given ~= '' then
    acknowledge(s, tonumber(given))
    cursor = math.min(tonumber(given), s.last)
  else
    cursor = s.delivered
  end
  -- Ends the stream this one replaces, on whichever node it is.
  wake(m)
else
  local after = s.acked
  if given ~= '' then after = tonumber(given) end
  acknowledge(s, after)
  cursor = math.min(after, s.last)
end
save(s)
redis.call('HINCRBY', nkey(m), NODE, 1)
redis.call('HSET', mkey(m), 'seen', now_ms())
return {'ok', local_wakes, dropped, cursor, generation}
