-- Looks at, locks or sets the password of a room, by the rules of
-- `room::may_view` and `room::may_lock` (src/domain/room.rs). ARGV[7] =
-- `admin` or the calling member, ARGV[8] = `view`, `lock`, `unlock` or
-- `password`, ARGV[9] = the password's hash (empty: none).
local actor, op = ARGV[7], ARGV[8]
if not room_exists() then
  return {actor == 'admin' and 'room_not_found' or 'forbidden', local_wakes, dropped}
end
if actor ~= 'admin' then
  if op == 'view' and not is_member(actor) then return {'forbidden', local_wakes, dropped} end
  if op ~= 'view' and redis.call('HGET', ROOM, 'owner') ~= actor then
    return {'forbidden', local_wakes, dropped}
  end
end
if op == 'password' then
  if ARGV[9] == '' then redis.call('HDEL', ROOM, 'pw') else redis.call('HSET', ROOM, 'pw', ARGV[9]) end
elseif op ~= 'view' then
  local locked = op == 'lock' and '1' or '0'
  if redis.call('HGET', ROOM, 'locked') ~= locked then
    redis.call('HSET', ROOM, 'locked', locked)
    room_updated()
  end
end
local room = redis.call('HMGET', ROOM, 'capacity', 'locked', 'owner', 'created_at')
return {'ok', local_wakes, dropped, tonumber(room[1]), room[2], room[3], room[4], member_views()}
