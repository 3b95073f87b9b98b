-- faceswap.simulator.state: the settings (their types, defaults, checks) and the run-time state
-- that the control endpoints expose and reset. Every part reads them through this table
-- (S.config, S.state), since a reset replaces both.
local util = require "faceswap.simulator.util"
local array = util.array

local S = {
  opts = nil,       -- command-line options (host, port, parent_pid, config = the defaults)
  base_url = nil,   -- http://host:port, for attachment URLs
  config = nil,     -- current settings
  state = nil,      -- recorded requests, counters, scripts, jobs, callbacks
  on_reset = {},    -- functions run after each reset (the accounts seed themselves)
  -- what a reset does not touch: TCP connections open now, refused (the select() loop cannot
  -- watch their descriptor), accept() failures (EMFILE...), the event loop in use
  live = { clients = 0, refused = 0, accept_errors = 0, event_loop = "select" },
}

---------------------------------------------------------------------------------------------
-- Command line and configuration
---------------------------------------------------------------------------------------------
-- Every run-time setting with its type; the command line and POST /__sim/config both use it.
local CONFIG_TYPES = {
  token = "string", job_seconds = "number", channels = "array", subscription = "boolean",
  keepalive_timeout = "number", latency = "number", credits_total = "number",
  credits_used = "number", callback_timeout = "number", max_running = "integer",
  blocking_seconds = "number", seed_identity = "string", picsi_async = "boolean",
}

local function default_config()
  return {
    token = "test-token", job_seconds = 2, channels = array { "1100000000000000001" },
    subscription = true, keepalive_timeout = 5, latency = 0, credits_total = 800,
    credits_used = 0, callback_timeout = 10, max_running = 0,
    blocking_seconds = 1, seed_identity = "me", picsi_async = false,
  }
end

local function copy_config(c)
  local out = {}
  for k, v in pairs(c) do out[k] = v end
  local channels = array {}
  for i, ch in ipairs(c.channels) do channels[i] = ch end
  out.channels = channels
  return out
end

-- Checks one setting's type; returns the value (arrays marked) or nil and a message.
local function check_setting(key, value)
  local want = CONFIG_TYPES[key]
  if not want then return nil, "Unknown config key " .. tostring(key) end
  if want == "array" then
    if type(value) ~= "table" then return nil, "Config key " .. key .. " must be an array" end
    local out = array {}
    for i, v in ipairs(value) do out[i] = tostring(v) end
    return out
  end
  if want == "integer" then      -- JSON numbers arrive as floats: 2.0 is fine, 1.5 is not
    local n = type(value) == "number" and math.tointeger(value)
    if not n or n < 0 then return nil, "Config key " .. key .. " must be a whole number >= 0" end
    return n
  end
  if type(value) ~= want then return nil, "Config key " .. key .. " must be a " .. want end
  if want == "number" and value < 0 then return nil, "Config key " .. key .. " must be >= 0" end
  return value
end

-- Turns a command-line string into the setting's type.
local function cli_value(key, text)
  local want = CONFIG_TYPES[key]
  if want == "number" or want == "integer" then return tonumber(text) end
  if want == "boolean" then
    if text == "true" then return true elseif text == "false" then return false end
    return nil
  end
  if want == "array" then
    local out = {}
    for item in text:gmatch("[^,]+") do out[#out + 1] = item end
    return out
  end
  return text
end

local function reset_state()
  S.config = copy_config(S.opts.config)
  S.state = {
    requests = array {},
    connections = 0,
    open = {},         -- connections that carried an API request and are still open
    epoch = (S.state and S.state.epoch or 0) + 1,   -- connections seen before a reset get new numbers
    scripts = {},
    jobs = {},            -- jobid -> entry { data = public job table, final, left }
    job_order = {},
    active = {},          -- channel -> number of its jobs not in a terminal status
    rejected = 0,         -- calls answered the queue-full 429 (max_running, busy channel)
    callbacks = array {},
    accounts = {},        -- channel -> account (faceswap.simulator.accounts)
    busy = {},            -- channel -> true while a blocking command holds it
  }
  for _, hook in ipairs(S.on_reset) do hook() end
end

S.CONFIG_TYPES, S.default_config, S.copy_config, S.check_setting, S.cli_value =
  CONFIG_TYPES, default_config, copy_config, check_setting, cli_value
S.reset_state = reset_state

return S
