-- Removes a member, by the rules of `room::removal` (who may remove whom,
-- and the reason) and `room::owner_after_leave` (src/domain/room.rs).
-- ARGV[7] = the target, ARGV[8] = who asks (`admin`,
-- `member:<id>`, or `timeout` for the reaper), ARGV[9] = the member
-- timeout in ms (for `timeout`).
local target, actor = ARGV[7], ARGV[8]
local reason
if actor == 'timeout' then
  if not is_member(target) then return {'gone', local_wakes, dropped} end
  local seen = tonumber(redis.call('HGET', mkey(target), 'seen')) or 0
  if now_ms() - seen < tonumber(ARGV[9]) then return {'busy', local_wakes, dropped, seen} end
  reason = 'timeout'
elseif redis.call('EXISTS', ROOM) == 0 then
  return {actor == 'admin' and 'room_not_found' or 'unauthorized', local_wakes, dropped}
elseif actor == 'admin' then
  reason = 'removed'
else
  local caller = string.sub(actor, 8)
  if caller == target then
    reason = 'left'
  elseif not is_member(caller) then
    return {'unauthorized', local_wakes, dropped}
  elseif redis.call('HGET', ROOM, 'owner') ~= caller then
    return {'forbidden', local_wakes, dropped}
  else
    reason = 'removed'
  end
end
if not is_member(target) then
  return {reason == 'left' and 'unauthorized' or 'member_not_found', local_wakes, dropped}
end
-- Its readers, wherever they are, find it gone and end.
wake(target)
redis.call('ZREM', MEMBERS, target)
local selector = redis.call('HGET', mkey(target), 'sel')
if selector then redis.call('DEL', tkey(selector)) end
redis.call('DEL', mkey(target), ikey(target), nkey(target))
broadcast('member-left', string.format('{"member_id":"%s","reason":"%s"}', target, reason), nil)
notify('member-left', string.format('{"room_id":"%s","member_id":"%s","reason":"%s"}',
  ROOM_ID, target, reason))
local epoch = ''
if redis.call('ZCARD', MEMBERS) == 0 then
  epoch = redis.call('HGET', ROOM, 'epoch')
  redis.call('DEL', ROOM, MEMBERS)
  notify('room-closed', string.format('{"room_id":"%s"}', ROOM_ID))
elseif redis.call('HGET', ROOM, 'owner') == target then
  -- `room::owner_after_leave`: the heir is the oldest who may own it.
  local heir
  for _, m in ipairs(redis.call('ZRANGE', MEMBERS, 0, -1)) do
    if redis.call('HGET', mkey(m), 'own') ~= '0' then heir = m break end
  end
  if heir then redis.call('HSET', ROOM, 'owner', heir) else redis.call('HDEL', ROOM, 'owner') end
  room_updated()
end
return {'ok', local_wakes, dropped, epoch, reason}
