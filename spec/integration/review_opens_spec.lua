-- Review of "an https opener waits for the last one's TLS handshake" (transport_curl.c:
-- handshake_pending, admit, held_wait): the wait is for https transfers only. A plain http
-- transfer (a download from a loopback host) started while an https one waits for a handshake
-- that never ends goes past it, not after it; the openers that wait on one that is cancelled
-- or whose client is closed end as they should; a closed client's transport is not used again.
-- Connections are counted as the listeners accept them (each kept open, so that the server
-- side never ends a handshake: it never answers).
local faceswap = require "faceswap"
local socket = require "socket"

local TOKEN = "review-opens-token"

describe("review: https openers waiting for a handshake", function()
  local tls, plain, accepted
  local function listen()
    local l = assert(socket.bind("127.0.0.1", 0, 64))
    l:settimeout(0)
    return l, select(2, l:getsockname())
  end
  -- The connections listener l has accepted so far (kept open: nothing is answered).
  local function count(l)
    accepted[l] = accepted[l] or {}
    while true do
      local s = l:accept()
      if not s then break end
      table.insert(accepted[l], s)
    end
    return #accepted[l]
  end
  before_each(function() accepted = {} end)
  after_each(function()
    for _, list in pairs(accepted) do for _, s in ipairs(list) do s:close() end end
    if tls then tls:close() tls = nil end
    if plain then plain:close() plain = nil end
  end)

  local function client(port)
    return faceswap.new { token = TOKEN, base_url = "https://127.0.0.1:" .. port, retry = false,
                          timeout = 600, connect_timeout = 600 }
  end

  -- Steps c (step(0)) until ok() holds, 30 s at most.
  local function until_(c, ok)
    local give_up = socket.gettime() + 30
    repeat c:step(0) socket.sleep(0.0005) until ok() or socket.gettime() > give_up
    return ok()
  end

  -- A client over https to `tls` with three polls started, the first one's connection made
  -- (its handshake never ends), and the port of `plain`, an http listener.
  local function opened()
    local tport, pport
    tls, tport = listen()
    plain, pport = listen()
    local c = client(tport)
    local polls = {}
    for i = 1, 3 do polls[i] = c:spawn(function() return c:job("opener" .. i) end) end
    assert.is_true(until_(c, function() return count(tls) >= 1 end), "no https connection")
    return c, polls, pport
  end

  it("an http transfer goes past an https one waiting for the last handshake", function()
    local c, polls, pport = opened()
    local got = c:spawn(function() return c:download("http://127.0.0.1:" .. pport .. "/a.png") end)
    -- which connects first: the http download, or the next https one (held for the handshake)
    assert.is_true(until_(c, function() return count(plain) >= 1 or count(tls) >= 2 end))
    local https_then, http_then = count(tls), count(plain)
    c:close()
    assert.same({ 1, 1 }, { https_then, http_then })
    for _, t in ipairs(polls) do assert.same("client closed", select(2, t:result()).error) end
    assert.same("client closed", select(2, got:result()).error)
  end)

  it("the opener cancelled: the next https one joins, and every task gets its own end", function()
    local c, polls = opened()
    assert.is_true(polls[1]:cancel())
    assert.is_true(until_(c, function() return count(tls) >= 3 end), "the others never joined")
    local _, err = polls[1]:result()
    assert.same({ "cancelled", "task cancelled" }, { err.kind, err.error })
    assert.is_false(polls[2]:done())
    c:close()
    for k = 2, 3 do assert.same("client closed", select(2, polls[k]:result()).error) end
  end)

  it("a blocking call while tasks' openers wait does not wait for their handshake", function()
    local c, polls, pport = opened()
    -- nothing answers: the blocking download ends at its own timeout, its connection made
    local _, err = c:download("http://127.0.0.1:" .. pport .. "/b.png", { timeout = 0.3 })
    assert.equal("timeout", err.kind)
    assert.equal(1, count(plain))
    c:close()
    -- closed: every call raises, the transport is not driven again
    assert.has_error(function() c:step(0) end)
    assert.has_error(function() c:job("x") end)
    for _, t in ipairs(polls) do assert.same("client closed", select(2, t:result()).error) end
  end)
end)
