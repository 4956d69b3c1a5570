-- Closes a room. ARGV[7] = `end`: the service ends it, every member
-- removed first (each hears of those before it); `idle`: the reaper
-- closes a room the service made once it has been empty for its empty
-- timeout (`room::empty_room_closes`, src/domain/room.rs), or answers
-- when to look again (`wait`), or that it is no such room (`gone`).
-- Answers the closed room's epoch and the members it removed.
local keep = redis.call('HGET', ROOM, 'keep')
if ARGV[7] == 'idle' then
  if not keep then return {'gone', local_wakes, dropped} end
  local now = now_ms()
  if redis.call('EXISTS', MEMBERS) == 1 then
    return {'wait', local_wakes, dropped, now + tonumber(keep)}
  end
  local due = (tonumber(redis.call('HGET', ROOM, 'emptied')) or 0) + tonumber(keep)
  if now < due then return {'wait', local_wakes, dropped, due} end
  return {'ok', local_wakes, dropped, close_room(), {}}
end
if not room_exists() then return {'room_not_found', local_wakes, dropped} end
local gone = redis.call('ZRANGE', MEMBERS, 0, -1)
for _, m in ipairs(gone) do leave(m, 'removed') end
return {'ok', local_wakes, dropped, close_room(), gone}
