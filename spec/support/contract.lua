-- The transport contract of docs/development.md, checked against one client: each function
-- returns what it saw, one line per check. spec/integration/transport_contract_spec.lua runs them outside
-- nginx (libcurl) and inside (cosockets), and compares the lines with the contract's.
local M = {}

-- The scheduler's methods, and the shape of its tasks.
function M.methods(client, faceswap)
  local sched, out = client._sched, {}
  local function say(...) out[#out + 1] = table.concat({ ... }, " ") end
  local function kind(v) return math.type and math.type(v) or type(v) end -- (LuaJIT: no math.type)
  for _, m in ipairs { "spawn", "transfer", "step", "run", "current", "park", "wake", "cancel",
                       "close", "next_wakeup", "fd" } do
    if type(sched[m]) ~= "function" then say("missing", m) end
  end
  local t = client:spawn(function() faceswap.sleep(30) return "never" end)
  say("spawn", faceswap.type(t) or type(t), tostring(t))
  say("step", kind(client:step(0)))
  local fields = {}
  for k in pairs(t) do fields[#fields + 1] = k end
  table.sort(fields)
  say("fields", table.concat(fields, ","))
  local due = client:next_wakeup()
  say("next_wakeup", due == nil and "nil" or
    (type(due) == "number" and due > 0 and due <= 30) and "seconds" or tostring(due))
  local fd, why = client:fd()
  say("fd", kind(fd), tostring(why))
  say("cancel", tostring(t:cancel()), tostring(select(2, t:result())), tostring(t:cancel()))
  local u = client:spawn(function() faceswap.sleep(30) end)
  client:step(0)
  client:close()
  say("close", tostring(u:done()), tostring(select(2, u:result())))
  return table.concat(out, "\n")
end

-- transfer's 5th argument, the call's own options: `timeout` bounds that exchange, and for a
-- download `max` bounds the body, `path` streams it to a file renamed into place, `sink` gets
-- it in pieces. `a.url` is a download (an attachment), `a.dir` an empty directory; before the
-- call, the simulator was scripted to answer the next `GET /jobs` after 2 s and the next
-- download with 3 MiB (`flood`).
function M.transfer(client, a)
  local sched, out = client._sched, {}
  local function say(...) out[#out + 1] = table.concat({ ... }, " ") end
  local function failure(status, err)
    if status then return "status " .. tostring(status) end
    return table.concat({ err.kind, tostring(err.code), tostring(err.sent), tostring(err.retryable),
                          (tostring(err.error):gsub("%d+ milliseconds", "N milliseconds")) }, "|")
  end
  -- timeout: the slow answer is given up on after the call's 0.3 s, not the client's 60 s
  say("timeout", failure(sched:transfer("GET", "/jobs", nil, nil, { timeout = 0.3 })))
  -- sink: the 3 MiB flood arrives in pieces, in order
  local pieces = {}
  local status, _, n = sched:transfer("GET", a.url, nil, nil, { sink = function(piece)
    pieces[#pieces + 1] = piece
  end })
  local got = table.concat(pieces)
  say("sink", tostring(status), tostring(n == #got), tostring(#got), #pieces > 1 and "pieces" or "one piece",
    tostring(got == '{"data":"' .. string.rep("x", #got - 11) .. '"}'))
  local _, _, body = sched:transfer("GET", a.url, nil, nil, { timeout = 30 })
  say("sink false", failure(sched:transfer("GET", a.url, nil, nil, { sink = function() return false end })))
  -- max: past it, bad_response with what a download may be
  say("max", failure(sched:transfer("GET", a.url, nil, nil, { max = 10 })))
  say("max with a path", failure(sched:transfer("GET", a.url, nil, nil, { max = 10, path = a.dir .. "/b.png" })))
  -- path: the byte count, and the file holds the body
  status, _, n = sched:transfer("GET", a.url, nil, nil, { path = a.dir .. "/a.png" })
  local f = io.open(a.dir .. "/a.png", "rb")
  local written = f and f:read("*a")
  if f then f:close() end
  say("path", tostring(status), tostring(n == #body), tostring(written == body))
  say("path, no such directory", (failure(sched:transfer("GET", a.url, nil, nil,
    { path = a.dir .. "/no/such.png" })):gsub(a.dir:gsub("%p", "%%%0"), "DIR")))
  return table.concat(out, "\n")
end

return M
