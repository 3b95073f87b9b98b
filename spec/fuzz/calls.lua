-- spec/fuzz/calls.lua: what spec/fuzz/wire.lua asks a hostile server (spec/fuzz/answers.py),
-- the same under libcurl and inside nginx: n calls of a client made on `base` (a DELETE, a
-- POST, three GETs at once in tasks, and GETs), each answer a job or an error object. Returns
-- a function(faceswap, base, n) that returns how many errors of each kind came, as text
-- ("bad_response=3 transport=10 "), or raises when an answer made a call raise.
return function(faceswap, base, n)
  local c = faceswap.new { token = "fuzz-token", base_url = base, retry = false, timeout = 0.2 }
  local jobid = "0123456789abcdef0123456789abcdef"
  local kinds, names = {}, {}
  local function count(x, err)
    if x == nil then
      if faceswap.type(err) ~= "error" then error("not an error object: " .. tostring(err)) end
      if not kinds[err.kind] then names[#names + 1] = err.kind end
      kinds[err.kind] = (kinds[err.kind] or 0) + 1
    end
  end
  for i = 1, n do
    local r = i % 7
    if r == 0 then count(c:cancel(jobid))
    elseif r == 1 then count(c:headshot("a portrait"))
    elseif r == 2 then
      local tasks = {}
      for k = 1, 3 do tasks[k] = c:spawn(function() return c:job(jobid) end) end
      c:run()
      for k = 1, 3 do count(tasks[k]:result()) end -- (what a task raised: nil and its text)
    else count(c:job(jobid)) end
  end
  c:close()
  table.sort(names)
  local out = {}
  for _, name in ipairs(names) do out[#out + 1] = name .. "=" .. kinds[name] .. " " end
  return table.concat(out)
end
