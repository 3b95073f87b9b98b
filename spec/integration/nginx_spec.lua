-- The client inside a real nginx (OpenResty's lua module, LuaJIT): requests go through
-- cosockets, tasks are light threads, the callback endpoint answers at once, and one worker
-- serves many requests while each waits on the API.
local faceswap = require "faceswap"
local socket = require "socket"
local fixture = require "spec.support.fixture"
local sim = require "spec.support.sim"
local nginx = require "spec.support.nginx"


-- The application under test: what a user would put in nginx.conf.
local SERVER = [[
    location = /headshot {
      content_by_lua_block {
        local faceswap = require "faceswap"
        local client = faceswap.new { token = "@TOKEN@", base_url = "@SIM@", timeout = 5 }
        local args = ngx.req.get_uri_args()
        local job, err = client:headshot { prompt = args.prompt, replyUrl = args.reply_url,
                                           replyRef = args.ref }
        if job and args.wait then
          job, err = client:wait(job, { interval = 0.05, max_interval = 0.05, timeout = 10 })
        end
        if not job then
          ngx.status = 502
          ngx.say(tostring(err))
          return
        end
        ngx.header.content_type = "application/json"
        ngx.print(job:json())
      }
    }
    location = /job {
      content_by_lua_block {
        local faceswap = require "faceswap"
        local client = faceswap.new { token = "@TOKEN@", base_url = "@SIM@", retry = false }
        local job, err = client:job(ngx.var.arg_id)
        ngx.status = job and 200 or 502
        ngx.say(job and job.status or tostring(err))
      }
    }
    location = /batch {
      content_by_lua_block {
        local faceswap = require "faceswap"
        local client = faceswap.new { token = "@TOKEN@", base_url = "@SIM@" }
        local list = {}
        for i = 1, tonumber(ngx.var.arg_n) do list[i] = "prompt " .. i end
        local results = client:batch(list, { concurrency = 3,
          wait = { interval = 0.05, max_interval = 0.05, timeout = 10 } })
        local out = {}
        for i, r in ipairs(results) do
          out[i] = faceswap.type(r) == "job" and r.status or tostring(r)
        end
        ngx.say(table.concat(out, " "))
      }
    }
    location = /tasks {
      content_by_lua_block {
        local faceswap = require "faceswap"
        local client = faceswap.new { token = "@TOKEN@", base_url = "@SIM@" }
        local a = client:spawn(function() faceswap.sleep(0.05) return "slept" end)
        local b = client:spawn(function() error("boom", 0) end)
        local c = client:spawn(function(id) return client:job(id) end, "nope")
        client:run()
        local _, err = c:result()
        ngx.say(a:result(), " | ", (select(2, b:result()):match("^[^\n]*")), " | ", tostring(err), " | ",
          faceswap.type(a), " ", tostring(a:done()))
      }
    }
    location = /identities {
      content_by_lua_block {
        local faceswap = require "faceswap"
        local client = faceswap.new { token = "@TOKEN@", base_url = "@SIM@", retry = false }
        local out = {}
        local function add(r, err)
          out[#out + 1] = r == true and "true" or r and (r.status .. " " .. r.content) or tostring(err)
        end
        add(client:saveid { idname = "nx", image = "@FACE@" })
        add(client:delid { idname = "nx" })
        add(client:delete_account("1100000000000000001"))
        ngx.say(table.concat(out, "\n"))
      }
    }
    location = /options {
      content_by_lua_block {
        local faceswap = require "faceswap"
        local client = faceswap.new { token = "@TOKEN@", base_url = "@SIM@", retry = false }
        local a, out = ngx.req.get_uri_args(), {}
        local function add(r, err) out[#out + 1] = r and tostring(r) or tostring(err) end
        local function gone(path) local f = io.open(path, "rb") if f then f:close() end return f == nil end
        if a.step == "timeout" then
          -- the call's timeout, not the client's 60 s; then the client's again
          add(client:jobs { timeout = 0.3 })
          add(#assert(client:jobs()) >= 0)
        elseif a.step == "cut" then
          -- a reset mid-body: no file and no temporary
          add(client:download(a.url, { path = a.dir .. "/cut.png" }))
        elseif a.step == "fifo" then
          -- a path that is not a regular file is refused, nothing sent; a NUL in it raises
          add(client:download(a.url, { path = a.dir .. "/fifo" }))
          add(select(2, pcall(client.download, client, a.url, { path = a.dir .. "/a\0b" })))
        elseif a.step == "sink" then
          add(client:download(a.url, { sink = function() client:jobs() end }))
          add(client:download(a.url, { sink = function() error({}) end }))
          add(client:download(a.url, { sink = function() error("disk full", 0) end }))
        elseif a.step == "cancel" then
          -- a download killed by the thread that spawned it leaves no temporary
          local t = client:spawn(function() return client:download(a.url, { path = a.dir .. "/k.png" }) end)
          local function partial() -- the temporary is there: the body is arriving
            local l = io.popen("ls -A '" .. a.dir .. "'")
            local names = l:read("*a")
            l:close()
            return names:find("k.png.part-", 1, true) ~= nil
          end
          while not partial() and not t:done() do ngx.sleep(0.01) end
          add(t:cancel())
          add(select(2, t:result()))
          add(gone(a.dir .. "/k.png"))
        end
        ngx.print(table.concat(out, "\n"))
        client:close()
      }
    }
    location = /callback {
      content_by_lua_block {
        require("faceswap.resty").callback(function(job)
          local got = ngx.shared.received
          got:incr("count", 1, 0)
          got:set("job " .. (job.replyRef or job.jobid), job:json())
        end, { dict = "faceswap_callbacks" })
      }
    }
    location = /received {
      content_by_lua_block {
        local got = ngx.shared.received
        if ngx.var.arg_ref then ngx.print(got:get("job " .. ngx.var.arg_ref) or "") return end
        ngx.print(got:get("count") or 0)
      }
    }
]]

describe("inside nginx #external", function()
  local fx = fixture.simulator { job_seconds = 0.2, client = false }
  local n
  setup(function()
    n = nginx.start {
      http = "lua_shared_dict faceswap_callbacks 1m; lua_shared_dict received 1m;",
      server = SERVER:gsub("@(%u+)@", { TOKEN = fx.TOKEN, SIM = fx.base_url,
        FACE = nginx.root .. "/spec/support/demo-face.png" }),
    }
  end)
  teardown(function() if n then n:stop() end end)

  local function get(path) return nginx.request(n.url .. path) end

  it("submits a headshot and waits for it through cosockets", function()
    local status, body = get("/headshot?prompt=studio%20portrait&wait=1")
    assert.equal(200, status, body .. n:log())
    local job = assert(faceswap.decode(body))
    assert.equal("completed", job.status)
    assert.equal("studio portrait", job.prompt)
    local r = fx.sim:requests()
    assert.equal("POST", r[1].method)
    assert.equal("Bearer " .. fx.TOKEN, r[1].headers.authorization)
    assert.same({ prompt = "studio portrait" }, r[1].fields)
    assert.equal("GET", r[#r].method)
    assert.equal(job, assert(fx.new {}:job(job.jobid)))
  end)

  it("uploads a file, and sends DELETE with and without a form body, through cosockets", function()
    fx.sim:config { blocking_seconds = 0.05 }
    local status, body = get("/identities")
    assert.equal(200, status, body .. n:log())
    local lines = {}
    for line in body:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.truthy(lines[1]:find("^completed <@%d+> ID 'nx' saved"), lines[1])
    assert.truthy(lines[2]:find("^completed <@%d+> ID 'nx' deleted"), lines[2])
    assert.equal("true", lines[3])
    local methods = {}
    for _, r in ipairs(fx.sim:requests()) do methods[#methods + 1] = r.method .. " " .. r.path end
    assert.same({ "POST /saveid", "DELETE /delid", "DELETE /account/1100000000000000001" }, methods)
  end)

  it("honours a call's own options: timeout, and a download's path and sink", function()
    local function escape(v) return (v:gsub("[^%w]", function(c) return string.format("%%%02X", c:byte()) end)) end
    local p = io.popen("mktemp -d")
    local dir = p:read("*l")
    p:close()
    local function listing()
      local l = io.popen("ls -A '" .. dir .. "'")
      local names = l:read("*a")
      l:close()
      return names
    end
    local c = fx.new { retry = false }
    local url = assert(c:headshot("p", { wait = { interval = 0.05, max_interval = 0.05, timeout = 30 } })):urls()[1]
    c:close()
    local function step(name)
      local status, body = get("/options?step=" .. name .. "&url=" .. escape(url) .. "&dir=" .. escape(dir))
      assert.equal(200, status, body .. n:log())
      return body
    end
    fx.sim:script { action = "delay", seconds = 2, match = "^GET /jobs$" }
    assert.equal("timeout: Operation timed out after N milliseconds with 0 bytes received\ntrue",
      (step("timeout"):gsub("%d+ milliseconds", "N milliseconds")))
    fx.sim:script { action = "reset_during", match = "^GET /attachments/" }
    assert.equal("transport (200): Recv failure: Connection reset by peer", step("cut"))
    assert.equal("", listing())
    assert.truthy(os.execute("mkfifo '" .. dir .. "/fifo'"))
    local sent = #fx.sim:requests()
    assert.equal("invalid_request: cannot write " .. dir .. "/fifo: not a regular file\n" ..
      "bad argument #2 to 'download' (option 'path': a file name cannot contain a NUL byte)",
      step("fifo"))
    assert.equal(sent, #fx.sim:requests())
    assert.equal("fifo\n", listing())
    os.remove(dir .. "/fifo")
    assert.equal("cancelled (200): download stopped by its sink: attempt to use a faceswap client " ..
      "from inside its download's sink\n" ..
      "cancelled (200): download stopped by its sink: (error object is a table value)\n" ..
      "cancelled (200): download stopped by its sink: disk full", step("sink"))
    fx.sim:script { action = "drip", seconds = 0.05, match = "^GET /attachments/" }
    assert.equal("true\ncancelled: task cancelled\ntrue", step("cancel"))
    assert.equal("", listing())
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("returns the same errors as outside nginx", function()
    local status, body = get("/headshot?prompt=")
    assert.equal(502, status)
    assert.equal("invalid_request (400): Required param prompt is missing or empty\n", body)
    fx.sim:script { action = "html_502", match = "^POST /headshot$" }
    status, body = get("/headshot?prompt=x")
    assert.equal(502, status)
    assert.equal("server (502): HTTP 502: 502 Bad Gateway\n", body)
  end)

  it("sends a GET again on a new connection when a pooled one was closed; never a POST", function()
    local _, body = get("/headshot?prompt=warm")
    local job = assert(faceswap.decode(body))
    assert.same({ 200, "started\n" }, { get("/job?id=" .. job.jobid) }) -- the pool has one now
    fx.sim:script { action = "reset_before", match = "^GET /jobs/$" }
    assert.same({ 200, "started\n" }, { get("/job?id=" .. job.jobid) })
    local before = fx.sim:count("POST")
    fx.sim:script { action = "reset_before", match = "^POST /headshot$" }
    local status, text = get("/headshot?prompt=once")
    assert.equal(502, status)
    assert.equal("transport: Recv failure: Connection reset by peer\n", text) -- libcurl's words
    assert.equal(before + 1, fx.sim:count("POST"))
  end)

  it("runs tasks as light threads, and the batch over them", function()
    local status, body = get("/tasks")
    assert.equal(200, status, body)
    assert.equal("slept | boom | not_found (404): Unable to locate job nope | task true\n", body)
    status, body = get("/batch?n=5")
    assert.equal(200, status, body)
    assert.equal("completed completed completed completed completed\n", body)
  end)

  it("receives the callback, once, and answers 400 to what is not a job", function()
    local status, body = get("/headshot?prompt=cb&wait=1&ref=ref-1&reply_url=" .. n.url .. "/callback")
    assert.equal(200, status, body)
    local polled = faceswap.decode(body)
    local received = sim.wait_for(function()
      local _, text = get("/received?ref=ref-1")
      return text ~= "" and text
    end, 5)
    assert(received, "no callback arrived: " .. n:log())
    assert.equal(polled, faceswap.decode(received))
    assert.equal("ref-1", faceswap.decode(received).replyRef)
    local _, count = get("/received")
    -- the same callback again changes nothing
    status = nginx.request(n.url .. "/callback", "POST", received)
    assert.equal(204, status)
    local _, again = get("/received")
    assert.equal(count, again)
    status, body = nginx.request(n.url .. "/callback", "POST", "not a job")
    assert.equal(400, status)
    assert.matches("^bad_response: ", body)
    status, body = nginx.request(n.url .. "/callback", "POST", "{}")
    assert.equal(400, status)
    assert.equal("bad_response: not a job: no jobid string\n", body)
    status = nginx.request(n.url .. "/callback", "GET")
    assert.equal(405, status)
  end)

  it("one worker has 50 headshots waiting on the API at once", function()
    -- the simulator never answers them: if a call blocked the worker, one would arrive
    fx.sim:script { action = "hang", match = "^POST /headshot$", count = 50 }
    local conns = {}
    for i = 1, 50 do
      local c = socket.tcp()
      assert(c:connect("127.0.0.1", n.port))
      c:send("GET /headshot?prompt=p" .. i .. " HTTP/1.0\r\nHost: x\r\n\r\n")
      conns[i] = c
    end
    local arrived = sim.wait_for(function() return #fx.sim:requests() == 50 end, 10)
    for _, c in ipairs(conns) do c:close() end
    assert.is_true(arrived, #fx.sim:requests() .. " of 50 arrived")
  end)
end)
