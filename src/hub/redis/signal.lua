-- A signal, to the recipients of `room::recipients` (src/domain/room.rs).
-- ARGV[7] = sender (empty: the service), ARGV[8] = recipient (empty: every other
-- member), ARGV[9] = the event data, ARGV[10..12] = the signals the
-- sender's readers on the calling node delivered (`delivered_elsewhere`).
-- All recipients take it or none does. A member's signal to one member
-- answers the inbox's tail besides.
local from, to, data = ARGV[7], ARGV[8], ARGV[9]
if from == '' then
  if not room_exists() then return {'room_not_found', local_wakes, dropped} end
else
  local sender = load_member(from)
  if not sender then return {'unauthorized', local_wakes, dropped} end
  if delivered_elsewhere(sender, ARGV[10], ARGV[11], ARGV[12]) then save(sender) end
end
local recipients = {}
if to ~= '' then
  recipients[1] = load_member(to)
  if not recipients[1] then return {'member_not_found', local_wakes, dropped} end
else
  for _, m in ipairs(redis.call('ZRANGE', MEMBERS, 0, -1)) do
    if m ~= from then recipients[#recipients + 1] = load(m) end
  end
end
for _, s in ipairs(recipients) do
  if not can_accept(s, #data) then return {'inbox_full', local_wakes, dropped} end
end
for _, s in ipairs(recipients) do
  push(s, 'signal', data)
  save(s)
  wake(s.m, s.last, data)
end
if to == '' or from == '' then return {'ok', local_wakes, dropped, #recipients} end
-- A member's signal to one member: the inbox's tail, for the node to
-- append the sender's next ones itself (`tail.rs`): its last id, its `cum`,
-- and how many more events and bytes `can_accept` would take.
local s = recipients[1]
return {'ok', local_wakes, dropped, 1, s.last, s.cum, EVENTS - s.ulen, BYTES - s.ubytes}
