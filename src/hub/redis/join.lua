-- Join, by the rule of `room::admit` (src/domain/room.rs): an empty room
-- is created with the capacity asked, a locked or full one refuses.
-- ARGV[7..14] = member id, member view JSON, member-joined data,
-- capacity for a new room (`bad` when the asked one is out of range),
-- created_at, a fresh room epoch, the token's selector and the SHA-256 of
-- its secret (both hex); ARGV[15] = the password hash the join checked
-- (`room::password_unchanged`), ARGV[16] = the hash for a room it creates
-- (both empty: none), ARGV[17] = `1` if the member may own the room
-- (`room::owner_after_join`), else `0`.
local member, view, joined, capacity = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local selector, digest, checked, password = ARGV[13], ARGV[14], ARGV[15], ARGV[16]
local may_own = ARGV[17] == '1'

-- 64 random bits that clash: all but impossible, and refused before any change.
if redis.call('EXISTS', tkey(selector)) == 1 then return {'token_taken', local_wakes, dropped} end
local count = redis.call('ZCARD', MEMBERS)
-- A room the service made is there without members too.
local creating = count == 0 and redis.call('HEXISTS', ROOM, 'keep') == 0
if creating then
  if capacity == 'bad' then return {'invalid_capacity', local_wakes, dropped} end
  if checked ~= '' then return {'password_changed', local_wakes, dropped} end
  redis.call('DEL', ROOM)
  redis.call('HSET', ROOM, 'capacity', capacity, 'locked', '0',
    'created_at', ARGV[11], 'seq', 0, 'epoch', ARGV[12])
  if password ~= '' then redis.call('HSET', ROOM, 'pw', password) end
else
  local room = redis.call('HMGET', ROOM, 'locked', 'capacity', 'pw')
  if room[1] == '1' then return {'room_locked', local_wakes, dropped} end
  if count >= tonumber(room[2]) then return {'room_full', local_wakes, dropped, tonumber(room[2])} end
  if (room[3] or '') ~= checked then return {'password_changed', local_wakes, dropped} end
end
if creating then notify('room-created', string.format('{"room_id":"%s"}', ROOM_ID)) end
notify('member-joined', string.format('{"room_id":"%s","member":%s}', ROOM_ID, view))
local others = member_views()
broadcast('member-joined', joined, nil)
local owns = false
if may_own and (creating or not redis.call('HGET', ROOM, 'owner')) then
  redis.call('HSET', ROOM, 'owner', member)
  owns = true
  -- The others learn of it; the member itself from the answer.
  if not creating then room_updated() end
end
redis.call('ZADD', MEMBERS, redis.call('HINCRBY', ROOM, 'seq', 1), member)
redis.call('HSET', mkey(member), 'view', view, 'sel', selector, 'seen', now_ms(), 'c', NO_EVENTS)
if not may_own then redis.call('HSET', mkey(member), 'own', '0') end
redis.call('SET', tkey(selector), member .. ' ' .. digest)
local room = redis.call('HMGET', ROOM, 'capacity', 'epoch')
return {'ok', local_wakes, dropped, tonumber(room[1]), creating and 1 or 0, room[2], others,
  owns and 1 or 0}
