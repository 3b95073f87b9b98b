-- Downloads to disk and to a sink (issue 21, item 4): client:download(url, { path = FILE })
-- streams the body to a temporary file beside FILE and renames it into place once complete, so
-- FILE only ever holds a whole body and a failure leaves neither it nor a temporary;
-- { sink = fn } hands each piece to fn as it arrives, in order; `max` caps both. Neither holds
-- the body in memory.
local faceswap = require "faceswap"
local fixture = require "spec.support.fixture"

local MIB = 1024 * 1024
local FAST = { interval = 0.05, max_interval = 0.05, timeout = 30 }

local shell = require "spec.support.shell"
local listing, read = shell.ls, shell.read

-- The body the simulator's `flood` action sends for `n` bytes (docs/simulator.md).
local function flood_body(n) return '{"data":"' .. string.rep("x", n - 11) .. '"}' end

-- This process's resident memory, in KiB.
local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local kib
  for line in f:lines() do kib = kib or tonumber(line:match("^VmRSS:%s*(%d+)")) end
  f:close()
  return kib
end

describe("downloads", function()
  local fx = fixture.simulator { job_seconds = 0.1, client = { retry = false }, tmp = true }
  local url
  before_each(function() url = assert(fx.client:headshot("p", { wait = FAST })):urls()[1] end)

  describe("to a file", function()
    it("writes the body under its name and returns its size", function()
      local png = assert(fx.client:download(url))
      local n = assert(fx.client:download(url, { path = fx.tmp .. "/out.png" }))
      assert.equal(#png, n)
      assert.equal(png, read(fx.tmp .. "/out.png"))
      assert.same({ "out.png" }, listing(fx.tmp))
    end)

    it("a large body: complete under its name, and only under the temporary before", function()
      local size = 6 * MIB
      fx.sim:script { action = "flood", bytes = size, match = "^GET /attachments/" }
      local final = fx.tmp .. "/big.bin"
      local seen_partial = {}
      -- watch the directory from a task of the same client while the download runs in another
      local watcher_done = false
      local dl = fx.client:spawn(function()
        local n, err = fx.client:download(url, { path = final })
        watcher_done = true
        return n, err
      end)
      fx.client:spawn(function()
        while not watcher_done do
          local names = listing(fx.tmp)
          for _, name in ipairs(names) do
            if name ~= "big.bin" then seen_partial[name] = true end
          end
          -- the final name never holds a partial body
          local now = read(final)
          if now then assert.equal(size, #now) end
          faceswap.sleep(0.01)
        end
      end)
      fx.client:run()
      assert.equal(size, (dl:result()))
      assert.equal(flood_body(size), read(final))
      assert.same({ "big.bin" }, listing(fx.tmp))
      for name in pairs(seen_partial) do
        assert.truthy(name:find("^big%.bin%.part%-"), name)
      end
    end)

    it("a reset mid-body leaves no file and no temporary", function()
      fx.sim:script { action = "reset_during", match = "^GET /attachments/" }
      local n, err = fx.client:download(url, { path = fx.tmp .. "/cut.png" })
      assert.is_nil(n)
      assert.equal("transport", err.kind)
      assert.same({}, listing(fx.tmp))
    end)

    it("a body cut short leaves an existing file as it was", function()
      local f = assert(io.open(fx.tmp .. "/keep.png", "wb"))
      f:write("old bytes")
      f:close()
      fx.sim:script { action = "truncate", match = "^GET /attachments/" }
      local n, err = fx.client:download(url, { path = fx.tmp .. "/keep.png" })
      assert.is_nil(n)
      assert.equal("transport", err.kind)
      assert.equal("old bytes", read(fx.tmp .. "/keep.png"))
      assert.same({ "keep.png" }, listing(fx.tmp))
    end)

    it("an error status writes nothing", function()
      local n, err = fx.client:download(url:gsub("/1%.png", "/9.png"), { path = fx.tmp .. "/x.png" })
      assert.is_nil(n)
      assert.equal("not_found", err.kind)
      assert.equal("not_found (404): download failed with HTTP 404", tostring(err))
      assert.same({}, listing(fx.tmp))
    end)

    it("past max: bad_response, nothing left", function()
      fx.sim:script { action = "flood", bytes = 3 * MIB, match = "^GET /attachments/" }
      local n, err = fx.client:download(url, { path = fx.tmp .. "/big.bin", max = MIB })
      assert.is_nil(n)
      assert.equal("bad_response", err.kind)
      assert.equal("bad_response (200): answer larger than a download may be (1048576 bytes)",
        tostring(err))
      assert.same({}, listing(fx.tmp))
    end)

    it("a directory that does not exist, or a directory as the name: nothing sent", function()
      local before = #fx.sim:requests()
      local n, err = fx.client:download(url, { path = fx.tmp .. "/no/such/dir/x.png" })
      assert.is_nil(n)
      assert.equal("invalid_request: cannot write " .. fx.tmp ..
        "/no/such/dir/x.png: No such file or directory", tostring(err))
      assert.is_false(err.sent)
      n, err = fx.client:download(url, { path = fx.tmp })
      assert.is_nil(n)
      assert.equal("invalid_request: cannot write " .. fx.tmp .. ": Is a directory", tostring(err))
      assert.equal(before, #fx.sim:requests())
      assert.same({}, listing(fx.tmp))
    end)

    it("a retried download starts a fresh temporary and leaves one file", function()
      local c = faceswap.new { token = fx.TOKEN, base_url = fx.base_url,
                               retry = { base_delay = 0, min_delay = 0, max_delay = 0 } }
      fx.sim:script { action = "html_502", match = "^GET /attachments/" }
      local n = assert(c:download(url, { path = fx.tmp .. "/r.png" }))
      c:close()
      assert.equal(#read(fx.tmp .. "/r.png"), n)
      assert.same({ "r.png" }, listing(fx.tmp))
    end)

    it("memory does not grow with the body #novalgrind", function()
      -- warm up with a small one, then a body ten times larger than the growth allowed
      fx.sim:script { action = "flood", bytes = MIB, match = "^GET /attachments/" }
      assert(fx.client:download(url, { path = fx.tmp .. "/warm.bin" }))
      collectgarbage()
      local before = rss_kib()
      fx.sim:script { action = "flood", bytes = 64 * MIB, match = "^GET /attachments/" }
      local n = assert(fx.client:download(url, { path = fx.tmp .. "/huge.bin", max = 128 * MIB }))
      collectgarbage()
      assert.equal(64 * MIB, n)
      local grown = rss_kib() - before
      assert.is_true(grown < 16 * 1024, "RSS grew by " .. grown .. " KiB")
    end)
  end)

  describe("to a sink", function()
    it("gets the pieces in order, and the size is returned", function()
      local size = 3 * MIB
      fx.sim:script { action = "flood", bytes = size, match = "^GET /attachments/" }
      local pieces = {}
      local n = assert(fx.client:download(url, { sink = function(chunk)
        pieces[#pieces + 1] = chunk
      end }))
      assert.equal(size, n)
      assert.is_true(#pieces > 1)
      assert.equal(flood_body(size), table.concat(pieces))
    end)

    it("false stops the transfer", function()
      fx.sim:script { action = "flood", bytes = 3 * MIB, match = "^GET /attachments/" }
      local calls = 0
      local n, err = fx.client:download(url, { sink = function()
        calls = calls + 1
        return false
      end })
      assert.is_nil(n)
      assert.equal(1, calls)
      assert.equal("cancelled", err.kind)
      assert.equal("cancelled (200): download stopped by its sink (it returned false)", tostring(err))
    end)

    it("an error stops the transfer and is told", function()
      local n, err = fx.client:download(url, { sink = function() error("disk full", 0) end })
      assert.is_nil(n)
      assert.equal("cancelled (200): download stopped by its sink: disk full", tostring(err))
      n, err = fx.client:download(url, { sink = function() error({}) end })
      assert.is_nil(n)
      assert.equal("cancelled (200): download stopped by its sink: (error object is a table value)",
        tostring(err))
    end)

    it("may not use its client, and the client still works after", function()
      local n, err = fx.client:download(url, { sink = function() fx.client:jobs() end })
      assert.is_nil(n)
      assert.truthy(tostring(err):find("attempt to use a faceswap client from inside its " ..
        "download's sink", 1, true))
      assert(fx.client:jobs())
      assert(fx.client:download(url))
    end)

    it("is not retried once it has had a piece", function()
      local c = faceswap.new { token = fx.TOKEN, base_url = fx.base_url,
                               retry = { base_delay = 0, min_delay = 0, max_delay = 0 } }
      fx.sim:script { action = "reset_during", match = "^GET /attachments/" }
      local pieces = 0
      local n, err = c:download(url, { sink = function() pieces = pieces + 1 end })
      c:close()
      assert.is_nil(n)
      assert.equal("transport", err.kind)
      assert.is_false(err.retryable)
      local gets = 0
      for _, r in ipairs(fx.sim:requests()) do
        if r.path:find("^/attachments/") then gets = gets + 1 end
      end
      assert.equal(1, gets)
      assert.is_true(pieces >= 1)
    end)
  end)

  describe("options", function()
    local SPEC = debug.getinfo(1, "S").source:match("^@(.*)$")
    local cases = {
      { function(c) c:download("https://x.example/a.png", { path = "a", sink = print }) end,
        "bad argument #2 to 'download' (options 'path' and 'sink' exclude each other)" },
      { function(c) c:download("https://x.example/a.png", { path = "" }) end,
        "bad argument #2 to 'download' (option 'path' must be a file name)" },
      { function(c) c:download("https://x.example/a.png", { sink = "f" }) end,
        "bad argument #2 to 'download' (option 'sink' must be a function, got string)" },
      { function(c) c:download("https://x.example/a.png", { max = 0.5 }) end,
        "bad argument #2 to 'download' (option 'max' must be a whole number of bytes from 1)" },
      { function(c) c:download("https://x.example/a.png", { wait = true }) end,
        "bad argument #2 to 'download' (option 'wait' is only for the commands that start a job " ..
          "(changebg, headshot, picsi))" },
      { function(c) c:download("https://x.example/a.png", { file = "a" }) end,
        "bad argument #2 to 'download' (unknown option 'file')" },
    }
    fx.misuse(SPEC, cases)
  end)
end)
