-- docs/callbacks.md works as written: its plain-Lua receiver runs (on a free port instead of
-- 8081) beside the simulator, receives the callback of a real job, confirms it with
-- client:job and prints the replyRef, the status and the image URLs; a body that is not a job
-- is answered and dropped.
local shell = require "spec.support.shell"
local nginx = require "spec.support.nginx" -- free_port and the checkout's root
local sim = require "spec.support.sim"
local faceswap = require "faceswap"
local socket = require "socket"

local GUIDE = "docs/callbacks.md"
local TOKEN = "guide-token"

local function code_block(heading, language) return shell.code_block(GUIDE, heading, language) end

-- POSTs body to the receiver and returns the status line it answers.
local function post(port, body)
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(10)
  c:send(("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s")
    :format(#body, body))
  local line = c:receive("*l")
  c:close()
  return line
end

describe("docs/callbacks.md #external", function()
  local s, dir
  before_each(function()
    s = sim.start { job_seconds = 0.3, token = TOKEN }
    dir = shell.capture("mktemp -d"):gsub("\n$", "")
  end)
  after_each(function()
    s:stop()
    os.execute("rm -rf " .. shell.quote(dir))
  end)

  it("the plain Lua receiver prints each confirmed job once, with its replyRef and images", function()
    local port = nginx.free_port()
    local code, n = code_block("## A receiver in plain Lua", "lua"):gsub("8081", tostring(port))
    assert.equal(1, n)
    local f = assert(io.open(dir .. "/receiver.lua", "w"))
    f:write(code)
    f:close()
    local root = nginx.root
    local out = dir .. "/out"
    os.execute("cd " .. shell.quote(dir) .. " || exit 1; USEAPI_TOKEN=" .. shell.quote(TOKEN) ..
      " USEAPI_BASE_URL=" .. shell.quote(s.base_url) ..
      " LUA_PATH=" .. shell.quote(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;") ..
      " LUA_CPATH=" .. shell.quote(root .. "/build/5.4/?.so;;") ..
      " lua5.4 receiver.lua >out 2>&1 & echo $! >" .. shell.quote(dir .. "/pid"))
    local pid = assert(tonumber(shell.read(dir .. "/pid")))
    finally(function() os.execute("kill " .. pid .. " 2>/dev/null") end)
    -- wait until it listens
    local deadline = socket.gettime() + 20
    repeat
      local c = socket.connect("127.0.0.1", port)
      if c then c:close() break end
      socket.sleep(0.05)
    until socket.gettime() > deadline

    assert.equal("HTTP/1.1 204 No Content", post(port, "not a job"))
    local client = faceswap.new { token = TOKEN, base_url = s.base_url }
    local job = assert(client:headshot { prompt = "studio portrait", replyRef = "order-17",
                                         replyUrl = "http://127.0.0.1:" .. port .. "/" })
    local done = assert(client:wait(job, { interval = 0.1 }))
    assert.equal("completed", done.status)
    -- the same callback again: handled once
    assert.equal("HTTP/1.1 204 No Content", post(port, done:json()))
    local expected = "order-17\tcompleted\t" .. table.concat(done:urls(), " ") .. "\n"
    local printed
    deadline = socket.gettime() + 20
    repeat
      socket.sleep(0.05)
      printed = shell.read(out) or ""
    until printed == expected or socket.gettime() > deadline
    assert.equal(expected, printed)
    client:close()
  end)
end)
