-- Removes a member, by the rules of `room::removal` (who may remove whom,
-- and the reason), `room::owner_after_leave` and `room::empty_room_closes`
-- (src/domain/room.rs).
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
elseif not room_exists() then
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
leave(target, reason)
-- When it empties, the room closes, or, made by the service, waits its
-- empty timeout for a join (`room::empty_room_closes`): the caller
-- indexes it to be looked at then (`close.lua`).
local epoch, due = '', ''
if redis.call('ZCARD', MEMBERS) == 0 then
  local keep = redis.call('HGET', ROOM, 'keep')
  if keep then
    local now = now_ms()
    redis.call('HSET', ROOM, 'emptied', now)
    redis.call('HDEL', ROOM, 'owner')
    due = now + tonumber(keep)
  else
    epoch = close_room()
  end
elseif redis.call('HGET', ROOM, 'owner') == target then
  -- `room::owner_after_leave`: the heir is the oldest who may own it.
  local heir
  for _, m in ipairs(redis.call('ZRANGE', MEMBERS, 0, -1)) do
    if redis.call('HGET', mkey(m), 'own') ~= '0' then heir = m break end
  end
  if heir then redis.call('HSET', ROOM, 'owner', heir) else redis.call('HDEL', ROOM, 'owner') end
  room_updated()
end
return {'ok', local_wakes, dropped, epoch, reason, due}
