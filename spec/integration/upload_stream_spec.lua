-- Uploads sent from the file's descriptor (issue 20, target 3), against the simulator: the bytes
-- sent are the file's as it was checked; a file that changed since fails its request before
-- the body is whole (so never a body that disagrees with its Content-Length) and unsent; a
-- batch item's file is opened once for every account it is tried on; a retry sends the whole
-- file again; no descriptor is left open once a call returns; and no copy of the file is held
-- while it is sent (peak memory of a fresh process).
local faceswap = require "faceswap"
local sim = require "spec.support.sim"
local compat = require "spec.support.compat"

local TOKEN = "test-token"
local CH1, CH2 = "1100000000000000001", "1100000000000000002"
local FACE = "spec/support/demo-face.png"
local FAST = { interval = 0.05, max_interval = 0.05, timeout = 30 }

local shell = require "spec.support.shell"
local read, write = shell.contents, shell.write

local tmpfiles = {}
local function tmpfile(data)
  local path = os.tmpname()
  write(path, data)
  tmpfiles[#tmpfiles + 1] = path
  return path
end

-- How many of this process's descriptors are open on path (a removed file's too).
local function open_on(path)
  local stat = assert(io.open("/proc/self/stat"))
  local pid = stat:read("*a"):match("^(%d+)")
  stat:close()
  local ls = assert(io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null"))
  local n = 0
  for line in ls:lines() do
    if line:find("-> " .. path, 1, true) then n = n + 1 end
  end
  ls:close()
  return n
end

describe("uploads sent from the file's descriptor #integration", function()
  local s, client, face

  setup(function()
    s = sim.start { token = TOKEN, job_seconds = 0.2, channels = { CH1, CH2 } }
    face = read(FACE)
  end)
  teardown(function()
    s:stop()
    for _, p in ipairs(tmpfiles) do os.remove(p) end
  end)
  before_each(function()
    s:reset()
    client = faceswap.new { token = TOKEN, base_url = s.base_url, retry = false }
  end)
  after_each(function() client:close() end)

  -- The records of the simulator for POST path, in order.
  local function posts(path)
    local list = {}
    for _, r in ipairs(s:requests()) do
      if r.method == "POST" and r.path == path then list[#list + 1] = r end
    end
    return list
  end

  -- A client whose log runs change(path) just before the request leaves (after the checks).
  local function changing(change)
    client:close()
    client = faceswap.new { token = TOKEN, base_url = s.base_url, retry = false,
      log = function(_, _, what) if what == "request" then change() end end }
  end

  it("sends the file's bytes as they are on disk and holds no descriptor once it returns", function()
    local path = tmpfile(face)
    local job = assert(client:saveid { idname = "me", image = path })
    assert.equal("completed", job.status)
    local sent = posts("/saveid")
    assert.equal(1, #sent)
    assert.equal(#face, sent[1].files.image.size)
    assert.equal(face, sent[1].fields.image)
    assert.equal(0, open_on(path))
  end)

  it("sends the file, not the last body in memory, on a connection that just sent a headshot", function()
    -- the same transfer slot: a string body went with the headers (CURLOPT_POSTFIELDS), and a
    -- body of files must not send that again (it did: the simulator read a malformed multipart)
    assert(client:headshot("first"))
    local path = tmpfile(face)
    local job = assert(client:saveid { idname = "me", image = path })
    assert.equal("completed", job.status)
    assert.equal(face, posts("/saveid")[1].fields.image)
    assert.equal(1, s:stats().connections)
  end)

  it("fails a file that shrank after its check: invalid_request, unsent, no request whole", function()
    local path = tmpfile(face)
    changing(function() write(path, face:sub(1, 100)) end)
    local job, err = client:saveid { idname = "me", image = path }
    assert.is_nil(job)
    assert.same({ "invalid_request", nil, false, false, "image: cannot send " .. path ..
      ": it changed after it was checked (" .. #face .. " bytes then, 100 now)" },
      { err.kind, err.code, err.sent, err.retryable, err.error })
    assert.same({}, posts("/saveid"))
    assert.equal(0, open_on(path))
  end)

  it("fails a file that grew after its check, and one rewritten at its size", function()
    local path = tmpfile(face)
    changing(function() write(path, face .. "more") end)
    local job, err = client:changebg { image = path, a_background_photo_of = "a beach" }
    assert.is_nil(job)
    assert.same({ "invalid_request", false, "image: cannot send " .. path ..
      ": it changed after it was checked (" .. #face .. " bytes then, " .. (#face + 4) ..
      " now)" }, { err.kind, err.sent, err.error })
    path = tmpfile(face)
    changing(function()
      write(path, face:sub(1, -2) .. "x")
      assert(os.execute("touch -d '2001-02-03 04:05:06' " .. path)) -- its time, surely changed
    end)
    job, err = client:changebg { image = path, a_background_photo_of = "a beach" }
    assert.is_nil(job)
    assert.same({ "invalid_request", false, "image: cannot send " .. path ..
      ": it was modified after it was checked" }, { err.kind, err.sent, err.error })
    assert.same({}, posts("/changebg"))
  end)

  it("sends the whole file again when a request is retried", function()
    client:close()
    client = faceswap.new { token = TOKEN, base_url = s.base_url,
      retry = { sleep = function() end, random = function() return 0.5 end } }
    s:script { action = "queue_full", match = "^POST /saveid" }
    local path = tmpfile(face)
    assert(client:saveid { idname = "me", image = path })
    local sent = posts("/saveid")
    assert.equal(2, #sent)
    assert.equal(face, sent[1].fields.image)
    assert.equal(face, sent[2].fields.image)
  end)

  describe("in a batch", function()
    it("opens an item's file once: the next account gets the bytes checked", function()
      -- CH2 answers "Configuration not found": the item goes on to CH1. Meanwhile the path
      -- names another file; the item's own descriptor still reads the first one.
      assert(client:delete_account(CH2))
      local path = tmpfile(face)
      local other = "\137PNG\r\n\26\n" .. ("other"):rep(100)
      local attempts = {}
      local results = client:batch({ { command = "changebg", image = path,
        a_background_photo_of = "a beach" } }, { channels = { CH2, CH1 }, wait = FAST,
        on_send = function(i, attempt)
          attempts[#attempts + 1] = i .. ":" .. attempt
          if attempt == 1 then
            local tmp = tmpfile(other)
            assert(os.rename(tmp, path))
          end
        end })
      assert.same({ "1:1", "1:2" }, attempts)
      assert.equal("completed", results[1].status)
      assert.equal(CH1, results[1].channel)
      assert.equal(CH2, results.dead_channels[1].channel)
      local sent = posts("/changebg")
      assert.same({ CH2, CH1 }, { sent[1].fields.channel, sent[2].fields.channel })
      assert.equal(face, sent[1].fields.image)
      assert.equal(face, sent[2].fields.image)
      assert.equal(0, open_on(path))
    end)

    it("fails an item whose file changed after its check, unsent", function()
      local path = tmpfile(face)
      local results = client:batch({ { command = "changebg", image = path,
        a_background_photo_of = "a beach" }, "a headshot" }, { channels = { CH1 }, wait = FAST,
        concurrency = 1, on_send = function(i) if i == 1 then write(path, "shorter") end end })
      assert.same({ "invalid_request", false, false, "image: cannot send " .. path ..
        ": it changed after it was checked (" .. #face .. " bytes then, 7 now)" },
        { results[1].kind, results[1].sent, results[1].retryable, results[1].error })
      assert.equal("completed", results[2].status)
      assert.same({}, posts("/changebg"))
      assert.equal(0, open_on(path))
    end)
  end)

  it("holds no copy of the file while it is sent: peak memory grows far less than it", function()
    -- a fresh process, so that its peak (VmHWM) is this upload's: 24 MiB, sparse on disk
    local big = tmpfile("\137PNG\r\n\26\n")
    assert(os.execute("truncate -s " .. 24 * 1048576 .. " " .. big))
    local script = tmpfile([[
      local faceswap = require "faceswap"
      local function peak()
        local f = assert(io.open("/proc/self/status"))
        local kib = tonumber(f:read("*a"):match("VmHWM:%s*(%d+)"))
        f:close()
        return kib
      end
      local c = faceswap.new { token = arg[1], base_url = arg[2], retry = false }
      assert(c:saveid { idname = "warm", image = arg[4] })
      local before = peak()
      assert(c:saveid { idname = "big", image = arg[3] })
      io.write(peak() - before)
      c:close()
    ]])
    -- the interpreter running the specs (ASan's own under make test-asan), else this Lua's;
    -- leaks are this process's to check: LeakSanitizer's exit scan of the child can die on a
    -- thread's dynamic TLS (seen on kernel 6.18: "Tracer caught signal 11"), losing its output
    local run = assert(io.popen(string.format("ASAN_OPTIONS=detect_leaks=0 LUA_PATH=%q LUA_CPATH=%q %s %s %s %s %s %s",
      package.path, package.cpath, compat.interpreter, script, TOKEN, s.base_url, big, FACE)))
    local grown = tonumber(run:read("*a"))
    run:close()
    assert.is_number(grown)
    assert.is_true(grown < 8 * 1024, "peak grew by " .. tostring(grown) .. " KiB")
    assert.equal(24 * 1048576, posts("/saveid")[2].files.image.size)
  end)
end)
