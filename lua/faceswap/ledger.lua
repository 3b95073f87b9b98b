--- The file ledger of `faceswap batch --state FILE`: a write-ahead log of a batch's items.
--
-- One JSON object per line, appended, each written and fsync'd before the call that wrote it
-- returns. Every record names its item by `line` (its line in the batch file) and `prompt`,
-- and says where the item stands (`state`):
--
--  * `sending`: its headshot is about to be sent (written before each POST, `attempt` n);
--  * `submitted`: the server answered with a job, `jobid`;
--  * `done`: that job has ended, `jobid` and `status`;
--  * `failed`: the server answered that no job was made (`error`): nothing was billed;
--  * `unknown`: the POST may have reached the server but no answer came (`error`).
--
-- The last record of an item wins. An item whose last record is `sending` or `unknown` is of
-- unknown fate. The file is locked (flock, exclusive) while it is open: one writer at a time.
-- @module faceswap.ledger
local core = require "faceswap.core"
local cjson = require("cjson").new() -- a private instance: its settings are ours alone

local M = {}

local STATES = { sending = true, submitted = true, done = true, failed = true, unknown = true }

local Ledger = {}
Ledger.__index = Ledger

--- Opens (or creates) a ledger and locks it.
-- @tparam string path
-- @treturn[1] table the ledger
-- @return[2] nil
-- @treturn[2] string `"PATH: why"`
-- @treturn[2] string `"locked"` (another process has it open), `"not_regular"` or `"error"`
function M.open(path)
  local file, message, why = core.open_append(path)
  if not file then return nil, message, why end
  -- a last line without its newline is a write a crash cut short (load leaves it out): cut it
  -- off the file, or the next record would be appended onto it and make the line unreadable
  local text, err = file:read()
  local whole = text and (text:find("\n[^\n]*$") or 0)
  if text and whole < #text then text, err = file:truncate(whole) end
  if not text then
    file:close()
    return nil, err, "error"
  end
  return setmetatable({ path = path, file = file }, Ledger)
end

-- A record of the 0.2.0 form: "submitted<TAB>LINE<TAB>JOBID<TAB>PROMPT" or
-- "unknown<TAB>LINE<TAB>-<TAB>PROMPT".
local function old_record(text)
  local state, line, jobid, prompt = text:match("^(%l+)\t(%d+)\t([^\t]*)\t(.*)$")
  if state ~= "submitted" and state ~= "unknown" then return nil end
  return { state = state, line = tonumber(line), jobid = state == "submitted" and jobid or nil,
           prompt = prompt }
end

--- Reads the records back.
-- @tparam {[int]=string} prompts the batch's prompts by line number
-- @treturn[1] table line number -> its last record, with `n`, the record's line in the file
-- @return[2] nil
-- @treturn[2] string `"PATH:N: why"` for a record that is not one of this batch's
function Ledger:load(prompts)
  local text, err = self.file:read()
  if not text then return nil, err end
  local records, n = {}, 0
  -- a last line without its newline is a write a crash cut short: what it announced was never
  -- done (each record is on disk before the step it announces), so it is left out
  for body in text:gmatch("([^\n]*)\n") do
    n = n + 1
    local ok, r = pcall(cjson.decode, body)
    if not ok or type(r) ~= "table" then r = old_record(body) end
    local problem
    if type(r) ~= "table" or not STATES[r.state] or type(r.line) ~= "number" or
        r.line % 1 ~= 0 or r.line < 1 or type(r.prompt) ~= "string" or
        (r.jobid ~= nil and type(r.jobid) ~= "string") then
      problem = "unreadable"
    elseif (r.state == "submitted" or r.state == "done") and not r.jobid then
      problem = "no jobid"
    elseif prompts[r.line] ~= r.prompt then
      problem = ("line %d of the prompts differs"):format(r.line)
    end
    if problem then
      return nil, self.path .. ":" .. n .. ": not a record of this batch's prompts (" ..
        problem .. ")"
    end
    r.n, r.line = n, math.floor(r.line) -- (5.3+: cjson decodes every number as a float)
    records[r.line] = r
  end
  return records
end

--- Appends a record, on disk when it returns.
-- @tparam table record `state`, `line`, `prompt`, and `jobid`, `status`, `error`, `attempt`
-- as the state has them
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] string `"PATH: why"`; the file is left as it was
function Ledger:write(record)
  return self.file:append(cjson.encode(record) .. "\n")
end

--- Closes the file, releasing the lock. Closing twice is harmless.
function Ledger:close()
  if self.file then self.file:close() end
  self.file = nil
end

return M
