-- The head of the library of room functions (`script.rs` puts each
-- `*.lua` beside this file after it, as a function of its own): one room's
-- keys, the inbox rules of src/domain/inbox.rs written again over a Redis
-- stream, and wake-ups. Loaded once, not run again for every call.
--
-- KEYS[1] is the room's key prefix, `<prefix>:{<room>}:`: the hash tag puts
-- every key of one room in one cluster slot, so each call stays in one.
-- ARGV[1..6]: undelivered events limit, undelivered bytes limit, headroom,
-- this node's id, the prefix of the nodes' wake channels (empty on a
-- Cluster, where each room has one per node in its slot: `w:<node>`), the
-- room id. ARGV[7..] are the function's own.
--
-- A member's inbox is the stream `i:<id>`, whose entry ids are
-- `0-<event id>`, with its counters in the hash `m:<id>`; `n:<id>` counts
-- its open readers by node, the nodes to wake. Counts, not a set: a reader
-- closing and another opening on one node may reach Redis in either order.
--
-- An entry is `k <kind> d <data> c <cum>`, `cum` the bytes of every event
-- the inbox ever took, this one's included. A node that knows an inbox's
-- tail from `signal`'s answer appends a member's signal to it with plain
-- commands, without a function (`tail.rs`): the stream then runs ahead of
-- the counters, and `load` counts what it finds past them (`caught_up`).

-- Set by `setup` at the start of every call: Redis runs one call at a
-- time, so the library's functions share these as a script's locals would.
local K, EVENTS, BYTES, HEADROOM, NODE, WAKE, ROOM_ID
local HARD_EVENTS, HARD_BYTES, ROOM, MEMBERS
-- The room's stream of notices for webhooks (KEYS[2] of the functions that
-- notify, when the nodes send webhooks), or nil.
local NOTICES
-- Every function answers {status, local_wakes, dropped, ...}.
-- Members whose readers live on this node: the caller wakes them itself.
local local_wakes
-- Undelivered events let go past an inbox's hard bound, for the metrics.
local dropped
-- How a member's inbox counters are packed (`load`), and the counters of
-- a member with no event yet, which its hash holds from its join on:
-- packed at the first call, since `struct` is not there while the library
-- loads.
local COUNTERS, NO_EVENTS = 'dddddddd', nil

local function setup(keys, args)
  K = keys[1]
  EVENTS, BYTES, HEADROOM = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  NODE, WAKE, ROOM_ID = args[4], args[5], args[6]
  -- Limits::MEMBER_EVENT_MAX in src/domain/inbox.rs.
  HARD_EVENTS = EVENTS + HEADROOM
  HARD_BYTES = BYTES + HEADROOM * (4096 + 512)
  NOTICES = keys[2]
  ROOM, MEMBERS = K .. 'room', K .. 'members'
  local_wakes = {}
  dropped = 0
  NO_EVENTS = NO_EVENTS or struct.pack(COUNTERS, 0, 0, 0, 0, 0, 0, 0, 0)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- A notice for the application's back end (src/domain/notice.rs), kept in
-- the same call as its change, so that no node's death loses it. Bounded:
-- past 10 000 waiting in one room, its oldest go.
local function notify(kind, data)
  if NOTICES then
    redis.call('XADD', NOTICES, 'MAXLEN', '~', 10000, '*', 'k', kind, 'at', now_ms(), 'd', data)
  end
end

local function mkey(m) return K .. 'm:' .. m end
local function ikey(m) return K .. 'i:' .. m end
local function nkey(m) return K .. 'n:' .. m end
-- A token's selector (hex) to `<member> <digest>`, so that a token lookup
-- is one GET in the room's slot.
local function tkey(selector) return K .. 't:' .. selector end
local function is_member(m) return redis.call('ZSCORE', MEMBERS, m) ~= false end

-- An entry is {`0-<id>`, {'k', kind, 'd', data, 'c', cum}}.
local function id_of(entry) return tonumber(string.sub(entry[1], 3)) end
local function kind_of(entry) return entry[2][2] end
local function size_of(entry) return #entry[2][4] end
local function cum_of(entry) return tonumber(entry[2][6] or 0) end

-- Counts the signals nodes appended with plain commands since the
-- counters last saw the inbox: every entry past `last` is one,
-- undelivered, and `cum` says their bytes. Only a function deletes
-- entries, and it loads (so counts) them first.
local function caught_up(s)
  local top = redis.call('XREVRANGE', ikey(s.m), '+', '-', 'COUNT', 1)[1]
  if not top then return s end
  local id = id_of(top)
  if id <= s.last then return s end
  local events, bytes = id - s.last, cum_of(top) - s.cum
  s.last, s.cum = id, cum_of(top)
  s.hlen, s.hbytes = s.hlen + events, s.hbytes + bytes
  s.ulen, s.ubytes = s.ulen + events, s.ubytes + bytes
  return s
end

-- A member's inbox counters, packed in one field (`c`) of its hash as
-- eight doubles (`struct`, which Redis's Lua has): one string to read and
-- write and nothing to parse. Seven fields of decimal text took 6 µs of
-- Redis's time a call to read and 6 to write; this takes 1 (`redis-benchmark`).
local function unpacked(m, packed)
  -- Seven doubles: written before `cum` was counted.
  if #packed < 64 then packed = packed .. struct.pack('d', 0) end
  local s = {m = m}
  s.last, s.delivered, s.acked, s.hbytes, s.hlen, s.ulen, s.ubytes, s.cum =
    struct.unpack(COUNTERS, packed)
  return caught_up(s)
end
local function load(m)
  return unpacked(m, redis.call('HGET', mkey(m), 'c') or NO_EVENTS)
end
-- The counters of `m`, or nil when it is no member: one command where
-- `is_member` and `load` are two.
local function load_member(m)
  local packed = redis.call('HGET', mkey(m), 'c')
  return packed and unpacked(m, packed)
end
local function save(s)
  redis.call('HSET', mkey(s.m), 'c', struct.pack(COUNTERS,
    s.last, s.delivered, s.acked, s.hbytes, s.hlen, s.ulen, s.ubytes, s.cum))
end

-- Counts `entry` out of the counters; the caller deletes it.
local function uncount(s, entry)
  s.hbytes = s.hbytes - size_of(entry)
  s.hlen = s.hlen - 1
  if id_of(entry) > s.delivered then
    s.ulen = s.ulen - 1
    s.ubytes = s.ubytes - size_of(entry)
  end
end

local function drop(s, entry)
  redis.call('XDEL', ikey(s.m), entry[1])
  uncount(s, entry)
end

-- Deletes every entry up to `id`, those counted out already, in one
-- command: an XRANGE and an XDEL for each cost Redis more than the rest
-- of the function when readers fell behind (bench/HISTORY.md, round 16).
local function cut_through(s, id)
  if id then redis.call('XTRIM', ikey(s.m), 'MINID', '0-' .. (id + 1)) end
end

local function can_accept(s, size)
  return s.ulen < EVENTS and s.ubytes + size <= BYTES
end

local function over_hard_bounds(s)
  return s.hlen - s.ulen > HARD_EVENTS or s.hbytes - s.ubytes > HARD_BYTES
end

-- Cuts the oldest delivered entries past the hard bound on events without
-- reading them, when no entry is missing between the inbox's head and its
-- end (its length is the span of their ids): their bytes are then the
-- difference of two entries' `cum`. Reading them (below) cost Redis about
-- 1.4 µs an entry, and when every inbox of a busy node passed the bound
-- at once, functions of a millisecond each took Redis whole for half a
-- second (bench/HISTORY.md, round 19). What is left past the bound on
-- bytes, or in an inbox with a hole, the loop below reads and cuts.
local function cut_by_ids(s)
  local excess = (s.hlen - s.ulen) - HARD_EVENTS
  if excess <= 0 then return end
  local key = ikey(s.m)
  local head = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
  if not head then return end
  local first = id_of(head)
  if redis.call('XLEN', key) ~= s.last - first + 1 then return end
  local before = cum_of(head) - size_of(head)
  local cut = math.min(first + excess - 1, s.delivered)
  if cut < first or before < 0 then return end
  local last_cut = redis.call('XRANGE', key, '0-' .. cut, '0-' .. cut)[1]
  if not last_cut then return end
  s.hlen = s.hlen - (cut - first + 1)
  s.hbytes = s.hbytes - (cum_of(last_cut) - before)
  cut_through(s, cut)
end

-- Inbox::trim_delivered: the oldest delivered entries go, read a batch at
-- a time, until those left are within the bounds.
local function trim_delivered(s)
  cut_by_ids(s)
  local start, last_cut = '-', nil
  while over_hard_bounds(s) do
    local entries = redis.call('XRANGE', ikey(s.m), start, '0-' .. s.delivered, 'COUNT', 64)
    if #entries == 0 then break end
    for _, entry in ipairs(entries) do
      if not over_hard_bounds(s) then break end
      uncount(s, entry)
      last_cut = id_of(entry)
    end
    start = '(' .. entries[#entries][1]
  end
  cut_through(s, last_cut)
end

local function oldest_undelivered_membership_event(s)
  local start = '(0-' .. s.delivered
  while true do
    local entries = redis.call('XRANGE', ikey(s.m), start, '+', 'COUNT', 64)
    if #entries == 0 then return nil end
    for _, entry in ipairs(entries) do
      if kind_of(entry) ~= 'signal' then return entry end
    end
    start = '(' .. entries[#entries][1]
  end
end

-- Inbox::push: the caller has checked `can_accept` for a signal.
local function push(s, kind, data)
  local size = #data
  trim_delivered(s)
  while s.ulen >= HARD_EVENTS or s.ubytes + size > HARD_BYTES do
    local entry = oldest_undelivered_membership_event(s)
    if not entry then break end
    drop(s, entry)
    dropped = dropped + 1
  end
  s.last = s.last + 1
  s.cum = s.cum + size
  redis.call('XADD', ikey(s.m), '0-' .. s.last, 'k', kind, 'd', data, 'c', s.cum)
  s.hbytes = s.hbytes + size
  s.hlen = s.hlen + 1
  s.ulen = s.ulen + 1
  s.ubytes = s.ubytes + size
end

-- Once every event is delivered, none is undelivered, whatever the counts
-- say: after a failover whose new primary lost signals appended with plain
-- commands, the counters would count them for good (`caught_up`).
local function settle(s)
  if s.delivered >= s.last then s.ulen, s.ubytes = 0, 0 end
end

-- Whether it moved `delivered`.
local function mark_delivered(s, id)
  if id <= s.delivered then return false end
  for _, entry in ipairs(redis.call('XRANGE', ikey(s.m), '(0-' .. s.delivered, '0-' .. id)) do
    s.ulen = s.ulen - 1
    s.ubytes = s.ubytes - size_of(entry)
  end
  s.delivered = id
  settle(s)
  return true
end

-- A node's readers delivered the signals `from`..`to` (text; empty: none),
-- `bytes` of data, that came with their wake-ups, without reading the inbox
-- (src/hub/redis/local.rs): the member's counters `s` count them delivered
-- now. When they follow on from what the counters had delivered they are
-- all signals and none was dropped, so the counters move by them;
-- otherwise the held entries are looked at. Answers whether the counters
-- moved: the caller saves them.
local function delivered_elsewhere(s, from, to, bytes)
  if not to or to == '' then return false end
  from, to = tonumber(from), tonumber(to)
  if to <= s.delivered then return false end
  if from == s.delivered + 1 and to <= s.last then
    s.ulen = s.ulen - (to - from + 1)
    s.ubytes = s.ubytes - tonumber(bytes)
    s.delivered = to
    settle(s)
    return true
  end
  return mark_delivered(s, math.min(to, s.last))
end

-- Inbox::acknowledge.
local function acknowledge(s, id)
  id = math.min(id, s.last)
  s.acked = math.max(s.acked, id)
  local last_cut = nil
  for _, entry in ipairs(redis.call('XRANGE', ikey(s.m), '-', '0-' .. s.acked)) do
    uncount(s, entry)
    last_cut = id_of(entry)
  end
  cut_through(s, last_cut)
  mark_delivered(s, s.acked)
end

local function publish(node, message)
  if WAKE == '' then
    redis.call('SPUBLISH', K .. 'w:' .. node, message)
  else
    redis.call('PUBLISH', WAKE .. node, message)
  end
end

-- Wakes m's readers. A signal travels with its wake-up (`id` and its
-- `data`), so that they hand it out without reading the inbox; without
-- one, they read it.
local function wake(m, id, data)
  for _, node in ipairs(redis.call('HKEYS', nkey(m))) do
    if node == NODE then
      local_wakes[#local_wakes + 1] = id and (m .. ' ' .. id) or m
    elseif id then
      publish(node, ROOM_ID .. ' ' .. m .. ' ' .. id .. ' ' .. data)
    else
      publish(node, ROOM_ID .. ' ' .. m)
    end
  end
end

-- An event that is never refused.
local function deliver(m, kind, data)
  local s = load(m)
  push(s, kind, data)
  save(s)
  wake(m)
end

local function broadcast(kind, data, except)
  for _, m in ipairs(redis.call('ZRANGE', MEMBERS, 0, -1)) do
    if m ~= except then deliver(m, kind, data) end
  end
end

-- Room ids are `[A-Za-z0-9._~-]` and owners are UUIDs: nothing to escape.
local function room_updated()
  local room = redis.call('HMGET', ROOM, 'locked', 'capacity', 'owner')
  broadcast('room-updated', string.format(
    '{"room_id":"%s","locked":%s,"capacity":%d,"owner":%s}',
    ROOM_ID, room[1] == '1' and 'true' or 'false', tonumber(room[2]),
    room[3] and ('"' .. room[3] .. '"') or 'null'))
end

local function member_views()
  local views = {}
  for _, m in ipairs(redis.call('ZRANGE', MEMBERS, 0, -1)) do
    views[#views + 1] = redis.call('HGET', mkey(m), 'view')
  end
  return views
end

-- How long a member's inbox outlives it for the readers it had open,
-- which read it at their wake-up: milliseconds at worst.
local FAREWELL_MS = 10000

-- Takes `target` out of the room for `reason`: its keys go, its readers
-- wake and find it gone, the others hear of it. A member that leaves or
-- is removed with readers open hears of it too, last: its inbox stays a
-- while, its own `member-left` at the end, for them to read (`read.lua`).
-- One that timed out had none that read.
local function leave(target, reason)
  local left = string.format('{"member_id":"%s","reason":"%s"}', target, reason)
  wake(target)
  redis.call('ZREM', MEMBERS, target)
  local selector = redis.call('HGET', mkey(target), 'sel')
  if selector then redis.call('DEL', tkey(selector)) end
  if reason ~= 'timeout' and redis.call('EXISTS', nkey(target)) == 1 then
    local s = load(target)
    push(s, 'member-left', left)
    redis.call('PEXPIRE', ikey(target), FAREWELL_MS)
    redis.call('DEL', mkey(target), nkey(target))
  else
    redis.call('DEL', mkey(target), ikey(target), nkey(target))
  end
  broadcast('member-left', left, nil)
  notify('member-left', string.format('{"room_id":"%s","member_id":"%s","reason":"%s"}',
    ROOM_ID, target, reason))
end

-- Whether the room is there: it has members, or the service made it in
-- advance (`keep`, its empty timeout in ms) and it has not closed.
local function room_exists()
  return redis.call('EXISTS', MEMBERS) == 1 or redis.call('HEXISTS', ROOM, 'keep') == 1
end

-- Closes the room; answers its epoch, for the room index.
local function close_room()
  local epoch = redis.call('HGET', ROOM, 'epoch') or ''
  redis.call('DEL', ROOM, MEMBERS)
  notify('room-closed', string.format('{"room_id":"%s"}', ROOM_ID))
  return epoch
end
