-- fork() and exec (docs/lifecycle.md): a client used in a child of the process that made it
-- starts afresh, so parent and child each get their own answers and the parent's connections
-- are left alone; no descriptor of a client reaches a program a child executes.
local fixture = require "spec.support.fixture"
local compat = require "spec.support.compat"


-- The spec's own fork(): spec/support/forkhelp.c, built for the Lua running the specs.
local function forkhelp()
  local version = compat.build:match("^build/(.*)$")
  local so = compat.build .. "/spec/forkhelp.so"
  assert(compat.execute("make --no-print-directory -s LUA_VERSION=" .. version .. " " .. so ..
    " >/dev/null"), "cannot build " .. so)
  return assert(package.loadlib(so, "luaopen_forkhelp"))()
end

-- The sockets and other anonymous descriptors a program started by io.popen has open.
local function inherited()
  local pipe = assert(io.popen("ls -l /proc/self/fd/ 2>/dev/null"))
  local found = {}
  for line in pipe:lines() do
    local target = line:match("%-> (.*)$")
    if target and (target:find("^socket:") or target:find("^anon_inode:")) then
      found[#found + 1] = target
    end
  end
  pipe:close()
  table.sort(found)
  return table.concat(found, " ")
end

describe("fork and exec", function()
  local fh
  setup(function() fh = forkhelp() end)
  local fx = fixture.simulator { job_seconds = 0.2, config = { latency = 0 }, client = { retry = false } }

  -- Runs fn in a child process; the child exits 0 if fn returns true, 1 otherwise (or if it
  -- raises), and never returns into busted. Returns the child's pid.
  local function child(fn)
    local pid = fh.fork()
    if pid == 0 then
      local ok, good = pcall(fn)
      fh.exit(ok and good == true and 0 or 1)
    end
    return pid
  end

  it("parent and child both use one client and each gets its own answers", function()
    assert(fx.client:headshot("warm")) -- a kept-alive connection and the epoll set, shared by fork
    local fd = fx.client:fd()
    local pid = child(function()
      if fx.client:fd() ~= fd then return false end -- the child's own set, under the same number
      for i = 1, 10 do
        local job = fx.client:headshot("child" .. i)
        if not (job and job.prompt == "child" .. i) then return false end
        local again = fx.client:job(job.jobid)
        if not (again and again.jobid == job.jobid) then return false end
      end
      return true
    end)
    local wrong = {}
    for i = 1, 10 do
      local job = fx.client:headshot("parent" .. i)
      if not (job and job.prompt == "parent" .. i) then wrong[#wrong + 1] = tostring(job) end
      local again = fx.client:job(job.jobid)
      if not (again and again.jobid == job.jobid) then wrong[#wrong + 1] = tostring(again) end
    end
    assert.same({}, wrong)
    assert.equal(0, fh.wait(pid))
    assert.equal(fd, fx.client:fd())
    assert.equal(21, fx.sim:count("POST"))
  end)

  it("tasks on both sides finish with their own answers", function()
    assert(fx.client:headshot("warm"))
    local function batch(side)
      local tasks = {}
      for i = 1, 5 do
        tasks[i] = fx.client:spawn(function()
          local job = assert(fx.client:headshot(side .. i))
          return fx.client:wait(job, { interval = 0.05, max_interval = 0.05, timeout = 20 })
        end)
      end
      fx.client:run()
      local prompts = {}
      for i = 1, 5 do
        local job = tasks[i]:result()
        prompts[i] = job and job.status == "completed" and job.prompt
      end
      return prompts
    end
    local pid = child(function()
      local got = batch("child")
      return table.concat(got, ",") == "child1,child2,child3,child4,child5"
    end)
    assert.same({ "parent1", "parent2", "parent3", "parent4", "parent5" }, batch("parent"))
    assert.equal(0, fh.wait(pid))
  end)

  it("a transfer in flight at the fork stays the parent's; the child's task gets an error", function()
    fx.sim:config { latency = 0.5 }
    local t = fx.client:spawn(function() return fx.client:headshot("before fork") end)
    while fx.sim:count("POST") < 1 do fx.client:step(0.02) end
    local pid = child(function()
      fx.client:run()
      local v, err = t:result()
      return v == nil and tostring(err) == "transport: the process forked while this request " ..
        "was in flight; its answer goes to the parent process" and err.sent == true and
        err.retryable == false and assert(fx.client:headshot("child after")).prompt == "child after"
    end)
    fx.client:run()
    assert.equal("before fork", assert(t:result()).prompt)
    assert.equal(0, fh.wait(pid))
  end)

  it("a child that closes the client, or exits, leaves the parent's connection working", function()
    assert(fx.client:headshot("warm"))
    local pid = child(function()
      fx.client:close()
      collectgarbage()
      return true
    end)
    assert.equal(0, fh.wait(pid))
    assert.equal("after", assert(fx.client:headshot("after")).prompt)
    assert.equal(1, fx.sim:stats().connections) -- still the first connection
  end)

  it("a program run by io.popen inherits no descriptor of a client", function()
    fx.client:close()
    local before = inherited()
    local c = fx.new { retry = false }
    assert(c:headshot("kept alive"))
    local t = c:spawn(function() return c:job("x") end)
    c:step(0)
    assert.equal(before, inherited())
    c:run()
    c:close()
    assert.is_nil(select(1, t:result()))
  end)
end)
