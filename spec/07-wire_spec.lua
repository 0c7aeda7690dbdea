-- The wire as an attacker in the middle sees it: a UDP middlebox (LuaSocket, loopback only)
-- relays every datagram between two real nodes, and looks for plaintext, flips bytes, and
-- replays what it captured. Delivery must stay exact and the tampering must be counted.
local p2pnet = require "p2pnet"
local socket = require "socket"

local function split(addr)
  local ip, port = addr:match("^(.*):(%d+)$")
  return ip, tonumber(port)
end

-- Two nodes with a middlebox between them. `tamper(data, from_a)` returns the list of
-- datagrams to forward in place of `data` (empty to drop).
local function setup(tamper)
  local a = assert(p2pnet.node { host = "127.0.0.1" })
  local b = assert(p2pnet.node { host = "127.0.0.1" })
  local mb = assert(socket.udp())
  assert(mb:setsockname("127.0.0.1", 0))
  mb:settimeout(0)
  local b_ip, b_port = split(b:address())
  local a_ip, a_port = split(a:address())
  local seen = {}
  local function pump()
    for _ = 1, 512 do
      local data, ip, port = mb:receivefrom()
      if not data then return end
      local from_a = not (ip == b_ip and port == b_port)
      seen[#seen + 1] = data
      for _, out in ipairs(tamper(data, from_a, seen)) do
        if from_a then mb:sendto(out, b_ip, b_port) else mb:sendto(out, a_ip, a_port) end
      end
    end
  end
  local mb_ip, mb_port = mb:getsockname()
  local env = { a = a, b = b, mb = mb, seen = seen, address = mb_ip .. ":" .. mb_port }
  function env.spin(cond, seconds)
    local deadline = socket.gettime() + (seconds or 20)
    while not cond() do
      if socket.gettime() > deadline then return false end
      a:poll(0.001)
      pump()
      b:poll(0)
      pump()
    end
    return true
  end
  function env.close()
    a:close()
    b:close()
    mb:close()
  end
  return env
end

-- Sends `count` numbered messages from a to b through the middlebox and returns what b got.
local function transfer(env, count, body)
  local got = {}
  env.b:on("message", function(_, t, data) got[#got + 1] = { t, data } end)
  local pa
  env.a:on("join", function(p) pa = p end)
  assert(env.a:connect(env.address))
  assert.is_true(env.spin(function() return pa ~= nil end), "no join through the middlebox")
  for i = 1, count do
    assert(pa:send(i % 65536, body(i)))
  end
  env.spin(function() return #got >= count end, 40)
  return got
end

local function body(i) return ("secret-payload-%06d|"):format(i):rep(1 + i % 40) end

describe("the wire", function()
  it("carries no plaintext", function()
    local env = setup(function(data) return { data } end)
    local got = transfer(env, 100, body)
    assert.equals(100, #got)
    for _, d in ipairs(env.seen) do
      assert.is_nil(d:find("secret-payload", 1, true), "plaintext on the wire")
      assert.is_nil(d:find(env.a.id, 1, true))
    end
    env.close()
  end)

  it("delivers exactly when 10% of packets have a flipped byte, and counts the drops", function()
    local n = 0
    local env = setup(function(data)
      n = n + 1
      if n % 10 == 0 then
        local i = 1 + (n * 7919) % #data
        data = data:sub(1, i - 1) .. string.char((data:byte(i) ~ 0x20)) .. data:sub(i + 1)
      end
      return { data }
    end)
    local got = transfer(env, 300, body)
    assert.equals(300, #got)
    for i, m in ipairs(got) do
      assert.equals(i % 65536, m[1])
      assert.equals(body(i), m[2])
    end
    assert.is_true(env.a:stats().dropped + env.b:stats().dropped > 0)
    env.close()
  end)

  it("delivers exactly once when captured packets are replayed, and counts the drops", function()
    local env = setup(function(data, _, seen)
      local out = { data, data }               -- every packet twice
      if #seen > 20 and #seen % 5 == 0 then    -- and an old one now and then
        out[#out + 1] = seen[#seen - 20]
      end
      return out
    end)
    local got = transfer(env, 300, body)
    assert.equals(300, #got)
    for i, m in ipairs(got) do assert.equals(body(i), m[2]) end
    env.spin(function() return false end, 0.3)
    assert.equals(300, #got)
    assert.is_true(env.b:stats().dropped > 0)
    env.close()
  end)

  it("survives 5000 garbage datagrams and keeps working", function()
    local env = setup(function(data) return { data } end)
    local got = transfer(env, 1, body)
    assert.equals(1, #got)
    local s = assert(socket.udp())
    local b_ip, b_port = split(env.b:address())
    local seed = 12345
    local before = env.b:stats().dropped
    for i = 1, 5000 do
      local len = 1 + (seed % 1500)
      local t = {}
      for k = 1, len do
        seed = (seed * 1103515245 + 12345) % 2147483648
        t[k] = string.char(seed % 256)
      end
      if i % 2 == 0 then t[1] = string.char(1 + i % 4) end -- look like our packet types
      s:sendto(table.concat(t), b_ip, b_port)
      if i % 100 == 0 then env.b:poll(0) end
    end
    env.spin(function() return env.b:stats().dropped - before >= 4900 end, 10)
    assert.is_true(env.b:stats().dropped - before >= 4900)
    local pa = env.a:peers()[1]
    assert(pa:send(1, "after the storm"))
    assert.is_true(env.spin(function() return #got == 2 end, 10))
    assert.equals("after the storm", got[2][2])
    s:close()
    env.close()
  end)
end)
