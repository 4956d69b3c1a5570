-- Changes what a member shows the others, by the rule of
-- `room::may_update` (src/domain/room.rs). ARGV[7] = the member, ARGV[8] =
-- `admin` or the calling member, ARGV[9] = the member's view as the caller
-- read it, ARGV[10] = its new view, ARGV[11] = the `member-updated` data.
-- A view changed since the caller read it answers `changed`: it reads again.
local target, actor = ARGV[7], ARGV[8]
if actor ~= 'admin' and actor ~= target then return {'forbidden', local_wakes, dropped} end
if not is_member(target) then
  if actor ~= 'admin' then return {'unauthorized', local_wakes, dropped} end
  if not room_exists() then return {'room_not_found', local_wakes, dropped} end
  return {'member_not_found', local_wakes, dropped}
end
if redis.call('HGET', mkey(target), 'view') ~= ARGV[9] then return {'changed', local_wakes, dropped} end
redis.call('HSET', mkey(target), 'view', ARGV[10])
broadcast('member-updated', ARGV[11], target)
return {'ok', local_wakes, dropped}
