-- The transport contract of docs/development.md, checked against one client: returns what it
-- saw, one line per check. spec/transport_contract_spec.lua runs it outside nginx (libcurl)
-- and inside (cosockets), and compares the lines with the contract's.
return function(client, faceswap)
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
