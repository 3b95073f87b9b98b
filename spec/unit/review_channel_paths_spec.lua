-- Review of the channel authority's fast paths (issue 20): the same random sequence of
-- slot operations (acquire outside and inside tasks, cancelled owners, answers that keep the
-- slot as `true` or the jobid, that end it, queue-full 429s and other errors, polls that see
-- a job end, renewals, unwatches, sweeps, time passing past the lease) run twice, over an
-- in-process coordinator (the fast paths: take, lease_ended, answered's shortcut) and over the
-- same coordinator behind a proxy (the general path), must leave both with the same slots
-- running, the same requests on their way and the same jobs holding slots; and each side
-- keeps its books straight (posting = records without a job, the coordinator's live count =
-- its leases, the job map pointing at records of that job). A clock of the spec's own.
local authority = require "faceswap.channel"
local process = require "faceswap.coordinator.process"
local tasks = require "faceswap.task"
local CH = "1100000000000000001"

local function run(seed)
  math.randomseed(seed)
  local function count(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end

  local now = 1000
  local clock = function() return now end
  local function proxy(c)
    return setmetatable({}, { __index = function(_, k)
      if k == "closed" or k == "lease" then return c[k] end
      local v = c[k]
      if type(v) ~= "function" then return v end
      return function(_, ...) return v(c, ...) end
    end })
  end
  local function side(fast)
    local coord = process.new { lease = 10, clock = clock }
    local sched = tasks.scheduler({ poll = function() return nil end,
      cancel = function() return false end })
    local reg = authority.registry(sched, fast and coord or proxy(coord), clock)
    return { coord = coord, reg = reg, ch = reg(CH), sched = sched, pend = {}, tasks = {} }
  end
  local A, B = side(true), side(false)
  local jobs, nj = {}, 0
  local function check(where)
    for _, s in ipairs { A, B } do
      local ch = s.ch
      local p = 0
      for _, l in pairs(ch.leases) do if not l[6] then p = p + 1 end end
      assert(p == ch.posting, where .. ": posting " .. ch.posting .. " vs records " .. p)
      assert(ch.posting >= 0, where .. ": posting < 0")
      local c = s.coord.state.channels[CH]
      if c then
        assert(count(c.leases) == c.live, where .. ": live " .. c.live .. " vs " .. count(c.leases))
      end
      for j, l in pairs(s.reg.jobs) do assert(l[6] == j, where .. ": job map") end
    end
    local ra, rb = A.coord:running(CH), B.coord:running(CH)
    A.ch:expire(now) B.ch:expire(now)
    local d = {}
    if ra ~= rb then d[#d+1] = "running " .. ra .. " " .. rb end
    if A.ch.posting ~= B.ch.posting then d[#d+1] = "posting " .. A.ch.posting .. " " .. B.ch.posting end
    for _, j in ipairs(jobs) do
      if (A.reg:slot(j) ~= nil) ~= (B.reg:slot(j) ~= nil) then d[#d+1] = "slot " .. j end
    end
    if #d > 0 then error(where .. ": differ: " .. table.concat(d, ", ")) end
  end

  local function room(s)
    local c = s.coord.state.channels[CH]
    local cap = (c and c.capacity) or s.ch.guess
    return s.coord:running(CH) < cap and not (c and (c.dead or c.pause))
  end

  for step = 1, 400 do
    local op = math.random(11)
    local desc
    if op <= 3 then
      if room(A) and room(B) then
        local la, lb = A.ch:acquire(), B.ch:acquire()
        assert((la ~= nil) == (lb ~= nil), "acquire differs")
        if la then A.pend[#A.pend+1] = la B.pend[#B.pend+1] = lb end
        desc = "acquire"
      end
    elseif op == 4 then
      if room(A) and room(B) then
        for _, s in ipairs { A, B } do
          local t = s.sched:spawn(function()
            local l = s.ch:acquire()
            s.sched:park(now + 1e9)
            return l
          end)
          s.tasks[#s.tasks+1] = t
          s.sched:step(0)
        end
        desc = "task acquire"
      end
    elseif op == 5 then
      if #A.tasks > 0 then
        local k = math.random(#A.tasks)
        for _, s in ipairs { A, B } do s.sched:cancel(table.remove(s.tasks, k), "x") end
        desc = "cancel"
      end
    elseif op <= 7 then
      if #A.pend > 0 then
        local k = math.random(#A.pend)
        local la, lb = table.remove(A.pend, k), table.remove(B.pend, k)
        local kind = math.random(5)
        local job, err, keepA, keepB
        if kind <= 2 then
          local j
          if #jobs > 0 and math.random(4) == 1 then
            j = jobs[math.random(#jobs)] -- a jobid answered twice
          else
            nj = nj + 1
            j = "job" .. nj
            jobs[#jobs + 1] = j
          end
          job = { jobid = j, status = "started" }
          keepA = math.random(2) == 1 and true or j keepB = keepA
        elseif kind == 3 then
          job = { jobid = "done" .. step, status = "completed" } keepA, keepB = false, false
        elseif kind == 4 then
          err = { kind = "rate_limited", code = 429 } keepA, keepB = false, false
        else
          err = { kind = "server", code = 500 } keepA, keepB = false, false
        end
        local ra = A.ch:answered(la, job, err, keepA)
        local rb = B.ch:answered(lb, job, err, keepB)
        assert(ra == rb, "answered differs")
        desc = "answered " .. kind
      end
    elseif op == 8 then
      if #jobs > 0 then
        local j = jobs[math.random(#jobs)]
        local w = math.random(2) == 1
        A.reg:renew(j, w) B.reg:renew(j, w)
        desc = "renew " .. j
      end
    elseif op == 9 then
      if #jobs > 0 then
        local j = jobs[math.random(#jobs)]
        if math.random(2) == 1 then A.reg:ended(j) B.reg:ended(j) desc = "ended " .. j
        else A.reg:unwatch(j) B.reg:unwatch(j) desc = "unwatch " .. j end
      end
    elseif op == 11 then
      local fa, fb = A.ch:sweep(), B.ch:sweep()
      assert(fa == fb, "sweep differs")
      desc = "sweep"
    else
      now = now + math.random() * 6
      desc = "clock"
    end
    check("seed " .. seed .. " step " .. step .. " " .. (desc or "-"))
  end
  return A, B
end

describe("review: the authority's fast and general paths #unit", function()
  it("agree and keep their books over 60 random sequences of 400 operations", function()
  for seed = 1, 60 do
    local A, B = run(seed)
    assert.equal(A.coord:running(CH), B.coord:running(CH))
    assert.equal(A.ch.posting, B.ch.posting)
  end
  end)
end)
