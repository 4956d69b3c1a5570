-- Makes a room without members for the service, by the rule of
-- `room::may_create` (src/domain/room.rs): not over one that is there.
-- ARGV[7..12] = capacity, `1` if locked (else `0`), created_at, a fresh
-- room epoch, the empty timeout in ms, the password's hash (empty: none).
-- The caller has counted it among the kept rooms, against the bound.
if room_exists() then return {'room_exists', local_wakes, dropped} end
redis.call('DEL', ROOM)
redis.call('HSET', ROOM, 'capacity', ARGV[7], 'locked', ARGV[8], 'created_at', ARGV[9],
  'seq', 0, 'epoch', ARGV[10], 'keep', ARGV[11], 'emptied', now_ms())
if ARGV[12] ~= '' then redis.call('HSET', ROOM, 'pw', ARGV[12]) end
notify('room-created', string.format('{"room_id":"%s"}', ROOM_ID))
return {'ok', local_wakes, dropped}
