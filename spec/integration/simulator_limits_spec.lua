-- The simulator under load it must survive (issue 17, item 20): thousands of idle connections,
-- running out of file descriptors, large uploads. Each spec starts its own simulator, since
-- these leave it in states no other spec wants. Runs on any Lua: the simulator and the
-- connection holder are lua5.4 child processes (their `ulimit -n` raised by their shell).

local socket, cjson, faceswap, sim = require "spec.support.uses" ("socket", "cjson", "faceswap", "sim")

local TOKEN = "test-token"

-- One API exchange on a fresh connection: GET /account/<first channel>; returns the status
-- and the body.
local function get_account(s)
  local c = assert(socket.connect(s.host, s.port))
  c:settimeout(10)
  assert(c:send("GET /account/1100000000000000001 HTTP/1.1\r\nHost: " .. s.host .. "\r\nAuthorization: Bearer "
    .. TOKEN .. "\r\nConnection: close\r\n\r\n"))
  local answer, _, partial = c:receive("*a")
  c:close()
  answer = answer or partial
  return tonumber(answer:match("^HTTP/1%.1 (%d%d%d)")), answer:match("\r\n\r\n(.*)$")
end

-- A lua5.4 child with its own `ulimit -n` that opens n connections to the simulator and holds
-- them. With ask, it then sends GET /__sim/stats on each and counts the connections that
-- answered and those the simulator closed. It prints one line ("open n" or
-- "answered A closed C"), then holds everything until the file `release` exists (at most two
-- minutes), then exits, which closes them all.
local HOLDER = [[
local socket = require "socket"
local host, port, n, ask, release = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4] == "ask", arg[5]
local socks = {}
for i = 1, n do
  local c = socket.tcp()
  c:settimeout(30)
  local ok, err = c:connect(host, port)
  if not ok then print("connect " .. i .. " failed: " .. tostring(err)) os.exit(1) end
  socks[i] = c
end
if ask then
  local answered, closed = 0, 0
  for _, c in ipairs(socks) do
    c:send("GET /__sim/stats HTTP/1.1\r\nHost: x\r\n\r\n")
    local line = c:receive("*l")
    if line == "HTTP/1.1 200 OK" then answered = answered + 1 else closed = closed + 1 end
  end
  print("answered " .. answered .. " closed " .. closed)
else
  print("open " .. n)
end
io.stdout:flush()
local deadline = socket.gettime() + 120
while socket.gettime() < deadline do
  local f = io.open(release)
  if f then f:close() break end
  socket.sleep(0.05)
end
]]

local function hold(s, n, ask)
  local script, release = os.tmpname(), os.tmpname()
  os.remove(release)
  local f = assert(io.open(script, "w"))
  f:write(HOLDER)
  f:close()
  local pipe = assert(io.popen(string.format("ulimit -n 20000 && exec lua5.4 %s %s %d %d %s %s",
    script, s.host, s.port, n, ask and "ask" or "-", release), "r"))
  local line = pipe:read("*l")
  return line, function()
    assert(io.open(release, "w")):close()
    pipe:read("*a")
    pipe:close()
    os.remove(release)
    os.remove(script)
  end
end

-- The process's CPU time so far (user + system), in clock ticks, from /proc/PID/stat.
local function cpu_ticks(pid)
  local f = assert(io.open("/proc/" .. pid .. "/stat"))
  local stat = f:read("*a")
  f:close()
  local fields = {}
  for word in stat:match("^%d+ %b() (.*)$"):gmatch("%S+") do fields[#fields + 1] = word end
  return tonumber(fields[12]) + tonumber(fields[13])    -- utime, stime (fields 14 and 15)
end

local function rss_kib(pid)
  local f = assert(io.open("/proc/" .. pid .. "/status"))
  local status = f:read("*a")
  f:close()
  return tonumber(status:match("VmRSS:%s*(%d+) kB"))
end

-- Whether the process has descriptor fd open.
local function has_fd(pid, fd)
  local p = io.popen("ls /proc/" .. pid .. "/fd")
  local list = "\n" .. p:read("*a")
  p:close()
  return list:find("\n" .. fd .. "\n", 1, true) ~= nil
end

local CLK_TCK = (function()
  local p = io.popen("getconf CLK_TCK")
  local n = tonumber(p:read("*l"))
  p:close()
  return n
end)()

-- zlib's CRC-32 (Python's zlib.crc32) of each string, in order.
local function zlib_crc32s(datas)
  local paths = {}
  for i, data in ipairs(datas) do
    paths[i] = os.tmpname()
    local f = assert(io.open(paths[i], "wb"))
    f:write(data)
    f:close()
  end
  local p = io.popen("python3 -c 'import sys, zlib\nfor p in sys.argv[1:]: "
    .. "print(zlib.crc32(open(p, \"rb\").read()))' " .. table.concat(paths, " "))
  local crcs = {}
  for line in p:lines() do crcs[#crcs + 1] = tonumber(line) end
  p:close()
  for _, path in ipairs(paths) do os.remove(path) end
  assert.equal(#datas, #crcs)
  return crcs
end

-- Sends one request on an open keep-alive connection and reads its answer; returns the status.
local function exchange(c, request)
  assert(c:send(request))
  local head = {}
  repeat
    local line = assert(c:receive("*l"))
    head[#head + 1] = line
  until line == ""
  local length = tonumber(table.concat(head, "\n"):lower():match("content%-length: (%d+)"))
  if length and length > 0 then assert(c:receive(length)) end
  return tonumber(head[1]:match("^HTTP/1%.1 (%d%d%d)"))
end

describe("the simulator under load #external", function()
  local s
  after_each(function()
    if s then s:stop() end
    s = nil
  end)

  it("holds 10,000 idle connections and still answers a request", function()
    s = sim.start { max_files = 20000, keepalive_timeout = 120 }
    local line, release = hold(s, 10000)
    finally(release)
    assert.equal("open 10000", line)
    -- every connection the holder opened is held (plus the one asking)
    assert.equal(10001, sim.wait_for(function()
      local clients = s:stats().clients
      return clients == 10001 and clients
    end, 60) or s:stats().clients)
    local status, body = get_account(s)
    assert.equal(200, status)
    assert.equal("1100000000000000001", cjson.decode(body).channel)
    assert.same({ "luv", 0, 0 }, { s:stats().event_loop, s:stats().refused, s:stats().accept_errors })
  end)

  it("without lua-luv (select), refuses what select cannot watch, and answers once they close", function()
    s = sim.start { max_files = 20000, keepalive_timeout = 120, event_loop = "select" }
    assert.equal("select", s:stats().event_loop)
    local line, release = hold(s, 1100, true)
    local answered, closed = (line or ""):match("^answered (%d+) closed (%d+)$")
    answered, closed = tonumber(answered), tonumber(closed)
    release()
    assert.is_truthy(answered, line)
    assert.equal(1100, answered + closed)
    assert.is_true(closed > 0 and answered > 900, line)   -- descriptors 0..1023, some taken
    assert.equal(1, sim.wait_for(function() return s:stats().clients == 1 and 1 end, 60) or s:stats().clients)
    assert.equal(closed, s:stats().refused)
    assert.equal(200, (get_account(s)))
  end)

  it("out of file descriptors (ulimit -n 64), waits without spinning and answers once they close", function()
    s = sim.start { max_files = 64, keepalive_timeout = 120 }
    local socks = {}
    finally(function() for _, c in ipairs(socks) do c:close() end end)
    for i = 1, 100 do
      socks[i] = assert(socket.connect(s.host, s.port))
    end
    -- it has taken every descriptor it may have (a new one takes the lowest free number)
    assert.is_true(sim.wait_for(function() return has_fd(s.pid, 63) end, 60))
    local before, t0 = cpu_ticks(s.pid), socket.gettime()
    while socket.gettime() - t0 < 3 do socket.sleep(0.1) end
    local used = (cpu_ticks(s.pid) - before) / CLK_TCK
    -- a loop retrying accept() at once used 2.3 s of these 3; backing off uses next to none
    assert.is_true(used < 0.5, string.format("%.2f s of CPU in 3 s", used))
    for _, c in ipairs(socks) do c:close() end
    socks = {}
    assert.equal(200, (get_account(s)))
    local stats = s:stats()
    assert.is_true(stats.accept_errors > 0)
    assert.same({ 1, 0 }, { stats.clients, stats.refused })
  end)

  it("keeps each upload's size and CRC-32, not its bytes, and a reset gives the memory back", function()
    s = sim.start { blocking_seconds = 0 }
    local base = rss_kib(s.pid)
    local boundary = "xyzzy-boundary"
    local bodies, datas = {}, {}
    for i = 1, 8 do
      local n = 3 * 1024 * 1024 + i
      local image = string.rep(string.char(i, 0x50, 0x4e, 0x47, i * 7 % 256), math.ceil(n / 5)):sub(1, n)
      bodies[i] = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"idname\"\r\n\r\nbig" .. i
        .. "\r\n--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"image\"; filename=\"f.png\"\r\n"
        .. "Content-Type: image/png\r\n\r\n" .. image .. "\r\n--" .. boundary .. "--\r\n"
      datas[#datas + 1] = image
      datas[#datas + 1] = bodies[i]
    end
    -- the CRC-32s as zlib computes them: image 1, body 1, image 2...
    local crcs = zlib_crc32s(datas)
    assert.equal(16, #crcs)
    for i = 1, 8 do
      local c = assert(socket.connect(s.host, s.port))
      c:settimeout(30)
      assert(c:send("POST /saveid HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " .. TOKEN
        .. "\r\nContent-Type: multipart/form-data; boundary=" .. boundary .. "\r\nContent-Length: " .. #bodies[i]
        .. "\r\nConnection: close\r\n\r\n" .. bodies[i]))
      local answer = c:receive("*a")
      c:close()
      assert.equal("HTTP/1.1 ", answer:sub(1, 9))
    end
    local records = s:requests()
    assert.equal(8, #records)
    for i, r in ipairs(records) do
      local n = 3 * 1024 * 1024 + i
      -- (not assert.is_nil: it would print the 3 MiB it found)
      assert.is_true(r.body == nil, "the body kept: " .. #(r.body or ""))
      assert.same({ #bodies[i], "big" .. i, { filename = "f.png", content_type = "image/png", size = n } },
                  { r.body_size, r.fields.idname, r.files.image })
      assert.is_true(r.fields.image == nil, "the file field kept: " .. #(r.fields.image or ""))
      assert.same({ body = { size = #bodies[i], crc32 = crcs[2 * i] },
                    fields = { image = { size = n, crc32 = crcs[2 * i - 1] } } }, r.omitted)
    end
    s:reset()
    assert.same({}, s:requests())
    local grown = rss_kib(s.pid) - base
    -- the 8 uploads were 24 MiB; kept whole (body and the file field: twice) they held 50 MiB.
    -- What malloc keeps after a reset varies with the machine's load (3.6 MiB idle, 19.5 MiB
    -- seen under a loaded make test): the bound sits between that and the 50 MiB of a record
    -- kept whole.
    assert.is_true(grown < 32 * 1024, string.format("RSS grew by %d KiB", grown))
  end)

  -- Hostile review of issue 17, item 20: over keep-alive (what the library uses) the answer went
  -- out before the record was compacted, in slices that yielded, so s:requests() right after an
  -- upload held the whole body and no omitted (25 MiB: a 14 s control call).
  it("leaves out a body past 1 MiB as soon as an upload over keep-alive is answered", function()
    s = sim.start { blocking_seconds = 0, token = TOKEN }
    local png = assert(io.open("spec/support/demo-face.png", "rb")):read("*a")
    local image = png .. string.rep("\0", 4 * 1024 * 1024 - #png)
    local path = os.tmpname()
    finally(function() os.remove(path) end)
    local f = assert(io.open(path, "wb"))
    f:write(image)
    f:close()
    local c = faceswap.new { token = TOKEN, base_url = s.base_url, retry = false }
    finally(function() c:close() end)
    local job, e = c:saveid { idname = "big", image = path }
    assert.is_nil(e)
    assert.equal("completed", job.status)
    local r = s:requests()[1]
    -- (not assert.is_nil: it would print the 4 MiB it found)
    assert.is_true(r.body == nil, "the body kept: " .. #(r.body or "") .. " bytes")
    assert.is_true(r.fields.image == nil, "the file field kept: " .. #(r.fields.image or "") .. " bytes")
    assert.equal(r.body_size, type(r.omitted) == "table" and r.omitted.body and r.omitted.body.size)
    assert.same({ size = #image, crc32 = zlib_crc32s({ image })[1] }, r.omitted.fields.image)
    assert.same({ "big", { filename = path:match("[^/]*$"), content_type = "image/png", size = #image } },
                { r.fields.idname, r.files.image })
  end)

  it("checksums a chunked upload and a JSON member past 1 MiB as they arrive, on a kept-alive connection", function()
    s = sim.start { blocking_seconds = 0, token = TOKEN }
    local boundary = "chunky-boundary"
    local image = string.rep("\137PNG\r\n\26\n" .. string.char(1, 2, 3, 255, 0), 300000):sub(1, 2 * 1024 * 1024 + 7)
    local multipart = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"idname\"\r\n\r\nchunked"
      .. "\r\n--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"image\"; filename=\"c.png\"\r\n"
      .. "Content-Type: image/png\r\n\r\n" .. image .. "\r\n--" .. boundary .. "--\r\n"
    local chunks, at = {}, 1
    while at <= #multipart do                -- odd chunk sizes, so no piece ends on a field's edge
      local piece = multipart:sub(at, at + 100002)
      chunks[#chunks + 1] = string.format("%x\r\n%s\r\n", #piece, piece)
      at = at + #piece
    end
    local prompt = string.rep("a portrait, ", 150000)
    local json = cjson.encode { prompt = prompt }
    local want = zlib_crc32s({ image, multipart, prompt, json })
    local c = assert(socket.connect(s.host, s.port))
    finally(function() c:close() end)
    c:settimeout(60)
    local head = "Host: x\r\nAuthorization: Bearer " .. TOKEN .. "\r\n"
    assert.equal(200, exchange(c, "POST /saveid HTTP/1.1\r\n" .. head .. "Content-Type: multipart/form-data; boundary="
      .. boundary .. "\r\nTransfer-Encoding: chunked\r\n\r\n" .. table.concat(chunks) .. "0\r\n\r\n"))
    local r = s:requests()[1]
    assert.is_true(r.body == nil, "the body kept: " .. #(r.body or ""))
    assert.same({ body = { size = #multipart, crc32 = want[2] },
                  fields = { image = { size = #image, crc32 = want[1] } } }, r.omitted)
    assert.same({ #multipart, "chunked", { filename = "c.png", content_type = "image/png", size = #image } },
                { r.body_size, r.fields.idname, r.files.image })
    exchange(c, "POST /headshot HTTP/1.1\r\n" .. head .. "Content-Type: application/json\r\nContent-Length: "
      .. #json .. "\r\n\r\n" .. json)
    r = s:requests()[2]
    assert.is_true(r.body == nil and r.fields.prompt == nil, "the body or the prompt kept")
    assert.same({ body = { size = #json, crc32 = want[4] }, fields = { prompt = { size = #prompt, crc32 = want[3] } } },
                r.omitted)
    assert.same({ 1, 1 }, { s:requests()[1].conn, r.conn })
  end)
end)
