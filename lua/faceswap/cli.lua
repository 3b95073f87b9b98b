-- faceswap.cli: the `faceswap` command line (bin/faceswap). main(args, io) runs one command and
-- returns the exit status: 0 success, 1 an API, network, job or file failure, 2 a usage error.
-- `io` is for tests and embedding; any of its fields may be left out:
--   stdout, stderr, stdin  file-like objects (write / read)          default io.stdout, ...
--   getenv                 function(name) -> string or nil           default os.getenv
--   tty                    whether stderr is a terminal              default core.isatty(2)
--   options                extra options for faceswap.new (e.g. retry = false in specs)
--   catch_signals          false: batch leaves SIGINT and SIGTERM alone (default: it turns
--                          them into a stop, see commands.batch)
local faceswap = require "faceswap"
local core = require "faceswap.core"
local logs = require "faceswap.log"
local ledger = require "faceswap.ledger"

-- Lua 5.1 (LuaJIT) has neither table.unpack nor math.tointeger
local unpack = table.unpack or _G.unpack
local tointeger = math.tointeger or function(x)
  if type(x) == "number" and x % 1 == 0 and x >= -2 ^ 63 and x < 2 ^ 63 then return x end
end

local M = {}

-- == The command line as data: M.subcommands and M.options, from which the usage, each
-- command's help, the man page (tools/man.lua) and the bash completion (tools/completion.lua)
-- are written. The commands of the core's table (faceswap.commands) bring their arguments
-- (the metavars of their required fields), summary, attachments, mode and confirmation. ==

local TABLE = {} -- name -> the command's row (every row, also those with no subcommand)
for _, c in ipairs(core.commands("all")) do TABLE[c.name] = c end

-- A sample value for each metavar: a command's example is its synopsis with these.
local SAMPLES = { PROMPT = "'a portrait in a garden'", JOBID = "8a1f574fdbf79e8cd57e070476d9d5f3",
  IDNAME = "me", IMAGE = "me.png", SOURCE = "face.png", TARGET = "clip.gif",
  MESSAGE_ID = "1187654321098765432", FILE = "prompts.txt", CHANNEL = "1234567890123456789",
  ["FILE|-"] = "prompts.txt", ID = "9876543210987654321", DIR = "out", FLAGS = "--v2", N = "8",
  S = "5", URL = "https://example.com/hook", REF = "order-42" }

-- The required fields (or parameters) of a row, as metavars.
local function row_args(row)
  local args = {}
  for _, f in ipairs(row.params or row.fields) do
    if f.required then args[#args + 1] = f.metavar end
  end
  return args
end

-- Each subcommand: name, forms = { {args, summary, needs = {option...}} }, and its row (if
-- it is one). The CLI's own commands first, then every common row of the table.
M.subcommands = {
  { name = "headshot", row = TABLE.headshot },
  { name = "job", row = TABLE.job },
  { name = "wait", forms = { { args = row_args(TABLE.job),
    summary = "wait until a job has ended, then show it" } } },
  { name = "cancel", row = TABLE.cancel },
  { name = "batch", forms = { { args = { "FILE|-" }, summary = "a headshot for each line of " ..
    "FILE (- for stdin; blank lines and lines starting with # skipped), each waited for; " ..
    "prints one line per prompt: JOBID STATUS FILES..." } } },
}
for _, c in ipairs(core.commands("all")) do
  if c.common and c.name ~= "headshot" then M.subcommands[#M.subcommands + 1] = { name = c.name, row = c } end
end
M.subcommands[#M.subcommands + 1] = { name = "jobs", row = TABLE.jobs }
M.subcommands[#M.subcommands + 1] = { name = "account", forms = {
  { args = { "[CHANNEL]" }, summary = "the accounts (or one) with their credits left/total" },
  { args = { "add", TABLE.add_account.params[3].metavar }, needs = { "server" },
    summary = TABLE.add_account.summary .. " (the Discord token: from $DISCORD_TOKEN or " ..
    "standard input)" },
  { args = { "delete", TABLE.delete_account.params[1].metavar }, needs = { "yes" },
    summary = TABLE.delete_account.summary },
} }
local SUB = {}
for _, s in ipairs(M.subcommands) do
  SUB[s.name] = s
  if s.row and not s.forms then
    s.forms = { { args = row_args(s.row), summary = s.row.summary,
                  needs = s.row.confirm and { "yes" } or nil } }
  end
  for _, form in ipairs(s.forms) do
    form.needs = form.needs or {}
    local words = { s.name }
    for _, a in ipairs(form.args) do words[#words + 1] = a end
    for _, n in ipairs(form.needs) do words[#words + 1] = "--" .. n .. (n == "server" and " ID" or "") end
    form.synopsis = table.concat(words, " ")
  end
end

-- Which subcommands a row-driven option applies to.
local function rows_where(test)
  local list = {}
  for _, s in ipairs(M.subcommands) do
    if s.row and s.row.common and test(s.row) then list[#list + 1] = s.name end
  end
  return list
end
local function plus(list, ...)
  for i = 1, select("#", ...) do list[#list + 1] = (select(i, ...)) end
  return list
end
local waitable = function(r) return r.mode == "job" or r.mode == "either" end
local has_options = function(r)
  for _, f in ipairs(r.fields) do if f.name == "options" then return true end end
  return false
end

-- Every option: name, metavar (nil: a flag), help, applies (nil: every command).
M.options = {
  { name = "channel", metavar = "ID", help = "Discord channel of the account to use",
    applies = rows_where(function() return true end) },
  { name = "reply-url", metavar = "URL", help = "replyUrl, where the API posts the finished job",
    applies = rows_where(function() return true end) },
  { name = "reply-ref", metavar = "REF", help = "replyRef, sent back with it",
    applies = rows_where(function() return true end) },
  { name = "wait", help = "wait until the job has ended", applies = rows_where(waitable) },
  { name = "download", metavar = "DIR", help = "save completed jobs' images in DIR as " ..
    "JOBID-N.EXT, never overwriting (implies --wait)",
    applies = plus(rows_where(function(r) return r.attachments end), "wait", "batch") },
  { name = "json", help = "print the answer as JSON (batch: one object per line), and errors " ..
    "as JSON on stderr", applies = plus(rows_where(function() return true end), "job", "wait",
    "batch", "jobs", "account") },
  { name = "concurrency", metavar = "N", help = "jobs at once (default 4 per channel)",
    applies = { "batch" } },
  { name = "channels", metavar = "all|ID,ID", help = "spread a batch over these accounts " ..
    "(all: every account)", applies = { "batch" } },
  { name = "options", metavar = "FLAGS", help = "the command's options field",
    applies = rows_where(has_options) },
  { name = "server", metavar = "ID", help = "the account's Discord server",
    applies = { "account" } },
  { name = "yes", help = "confirm a command that deletes (" .. table.concat(plus(
    rows_where(function(r) return r.confirm end), "account delete"), ", ") .. ")",
    applies = plus(rows_where(function(r) return r.confirm end), "account") },
  { name = "state", metavar = "FILE|URL", help = "record each headshot in FILE before it is " ..
    "sent and as its answer arrives (on disk at once; one batch at a time per FILE); a rerun " ..
    "with the same FILE waits for the jobs submitted and submits only the rest. Ctrl-C stops " ..
    "submitting and lists the jobs submitted (exit status 130). With redis://HOST:PORT/DB/NAME " ..
    "the ledger lives in Redis and any number of batches of the same FILE, on any machines, " ..
    "share the work (each prompt claimed, sent once; the accounts shared through that Redis " ..
    "unless --coordinator names another)", applies = { "batch" } },
  { name = "resubmit-unknown", help = "with --state: submit again the prompts whose headshot " ..
    "may or may not have reached the server (by default they are listed, not resubmitted)",
    applies = { "batch" } },
  { name = "coordinator", metavar = "URL", help = "where the accounts' slots, holds and pauses " ..
    "are shared: redis://HOST:PORT/DB (default $FACESWAP_COORDINATOR; with --state redis://..., " ..
    "that Redis; else this process)", applies = plus(rows_where(function() return true end),
    "batch") },
  { name = "lease", metavar = "S", help = "seconds after which a slot, or a --state redis:// " ..
    "claim, whose process stopped renewing it is free (default 60)",
    applies = plus(rows_where(function() return true end), "batch") },
  { name = "interval", metavar = "S", help = "first poll interval in seconds while waiting",
    applies = plus(rows_where(waitable), "wait", "batch") },
  { name = "base-url", metavar = "URL", help = "API base URL (default $USEAPI_BASE_URL, " ..
    "else useapi.net's)" },
  { name = "help", help = "show the help (of a command: `faceswap help COMMAND`) and exit" },
  { name = "version", help = "show the version and exit" },
}
M.environment = "USEAPI_TOKEN (required), USEAPI_BASE_URL, FACESWAP_COORDINATOR, DISCORD_TOKEN " ..
  "(account add; else " ..
  "the first line of standard input: a token is never taken from the command line)"
M.exit_status = {
  { code = 0, text = "success" },
  { code = 1, text = "API, network, job or file failure" },
  { code = 2, text = "usage error (or --state FILE in use by another batch)" },
  { code = 130, text = "interrupted (Ctrl-C)" },
}

-- name -> { value = takes one, all = applies everywhere, [command] = true }
local OPTIONS = {}
for _, o in ipairs(M.options) do
  local spec = { value = o.metavar ~= nil, all = o.applies == nil }
  for _, c in ipairs(o.applies or {}) do spec[c] = true end
  OPTIONS[o.name] = spec
end

-- Text wrapped at 92 columns, each line after the first indented by `indent`.
local function wrap(text, indent, first)
  local lines, line = {}, first or ""
  for word in text:gmatch("%S+") do
    if #line + 1 + #word > 92 and line:find("%S") then
      lines[#lines + 1] = line
      line = (" "):rep(indent) .. word
    else
      line = line .. ((line:find("%S") and not line:find(" $")) and " " or "") .. word
    end
  end
  lines[#lines + 1] = line
  return table.concat(lines, "\n")
end

-- "  NAME  help" with the help at column 21 (or on the next line when NAME is long).
local function entry(name, help)
  if #name <= 17 then return wrap(help, 20, string.format("  %-17s ", name)) end
  return "  " .. name .. "\n" .. wrap(help, 20, (" "):rep(20))
end

local function option_head(o) return "--" .. o.name .. (o.metavar and (" " .. o.metavar) or "") end

local function footer()
  local codes = {}
  for _, e in ipairs(M.exit_status) do codes[#codes + 1] = e.code .. " " .. e.text end
  return wrap(M.environment, 13, "environment: ") .. "\n" ..
    wrap(table.concat(codes, ", "), 13, "exit status: ") .. "\n"
end

-- The overview: every command and option.
local function overview()
  local out = { "usage: faceswap COMMAND ARGUMENT [OPTIONS]", "", "commands:" }
  for _, s in ipairs(M.subcommands) do
    for _, f in ipairs(s.forms) do out[#out + 1] = entry(f.synopsis, f.summary) end
  end
  out[#out + 1] = ""
  out[#out + 1] = "options:"
  for _, o in ipairs(M.options) do
    local where = o.applies and (" (" .. table.concat(o.applies, ", ") .. ")") or ""
    if o.applies and #o.applies > 6 then where = "" end
    out[#out + 1] = entry(option_head(o), o.help .. where)
  end
  out[#out + 1] = ""
  out[#out + 1] = "'faceswap help COMMAND' (or 'faceswap COMMAND --help') shows one command."
  out[#out + 1] = ""
  return table.concat(out, "\n") .. "\n" .. footer()
end
M.usage = overview()

-- A subcommand's example: its first form with a sample for each metavar.
function M.example(s)
  local words = { "faceswap" }
  for w in s.forms[#s.forms == 3 and 2 or 1].synopsis:gmatch("%S+") do
    if not w:find("^%[") then words[#words + 1] = SAMPLES[w] or w end
  end
  return table.concat(words, " ")
end

-- One subcommand's help: its usage, what it does, its options, one example.
function M.help(name)
  local s = SUB[name]
  if not s then return nil end
  local out = {}
  for k, f in ipairs(s.forms) do
    out[#out + 1] = (k == 1 and "usage: " or "       ") .. "faceswap " .. f.synopsis .. " [OPTIONS]"
  end
  out[#out + 1] = ""
  for _, f in ipairs(s.forms) do
    out[#out + 1] = wrap((#s.forms > 1 and (f.synopsis .. ": ") or "") ..
      f.summary:gsub("^%l", string.upper) .. (f.summary:find("%.$") and "" or "."), 0)
  end
  if s.row and s.row.common and s.row.mode == "blocking" then
    out[#out + 1] = "It holds its account's channel until the bot has answered."
  end
  out[#out + 1] = ""
  out[#out + 1] = "options:"
  for _, o in ipairs(M.options) do
    if OPTIONS[o.name].all or OPTIONS[o.name][name] then
      if not (name == "account" and o.name == "channel") then
        out[#out + 1] = entry(option_head(o), o.help)
      end
    end
  end
  out[#out + 1] = ""
  out[#out + 1] = "example:"
  out[#out + 1] = "  " .. M.example(s)
  out[#out + 1] = ""
  return table.concat(out, "\n") .. "\n" .. footer()
end

local HINT = "Try 'faceswap --help' for usage."

-- JSON as printed: a private cjson instance, and never "\\/" for "/" (cjson escapes it, and
-- this Debian build has no encode_escape_forward_slash to turn that off): a "/" after an odd
-- run of backslashes is an escaped slash.
local cjson = require("cjson").new()
local function unslash(text)
  return (text:gsub("(\\+)/", function(run)
    if #run % 2 == 1 then return run:sub(2) .. "/" end
  end))
end
local function json(value) return unslash(cjson.encode(value)) end

-- An error as the JSON object printed under --json: {"error": {kind, code, text}}.
-- Its members in this order; code left out when there is none.
local function json_error(err, kind)
  local e = type(err) == "table" or type(err) == "userdata"
  local code = e and err.code or nil
  return '{"error":{"kind":' .. json(e and err.kind or kind or "failure") ..
    (code and (',"code":' .. json(code)) or "") .. ',"text":' .. json(tostring(err)) .. "}}"
end

local Usage = {} -- raised as { Usage, message } by the argument checks

local function usage_error(message) error({ Usage, message }, 0) end

-- args -> words (command and argument) and options by name. "--name value", "--name=value";
-- "--" ends the options, and "-" is a word (stdin).
local function parse(args)
  local words, opts, i, rest = {}, {}, 1, false
  while i <= #args do
    local a = args[i]
    if rest or a == "-" or a:sub(1, 1) ~= "-" then
      words[#words + 1] = a
    elseif a == "--" then
      rest = true
    else
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:match("^%-%-(.+)$") or (a == "-h" and "help")
      local spec = OPTIONS[name]
      if not spec then usage_error("unknown option '" .. a:match("^[^=]*") .. "'") end
      if not spec.value then
        if value then usage_error("option '--" .. name .. "' takes no value") end
        value = true
      elseif not value then
        i = i + 1
        value = args[i]
        if value == nil then usage_error("option '--" .. name .. "' needs a value") end
      end
      opts[name] = value
    end
    i = i + 1
  end
  return words, opts
end

-- What the core's checks say of a prompt (and channel) the server could never take: a control
-- byte, invalid UTF-8...; nil when it can be sent.
local function prompt_problem(prompt, channel)
  local ok, why = pcall(core.build_headshot, { prompt = prompt, channel = channel }, "multipart")
  if ok then return nil end
  why = tostring(why)
  return why:match("%(([^()]*)%)$") or (why:gsub("^[^\n]-:%d+: ", "", 1))
end

-- The same of a jobid (from a state file): nil when it can be asked for.
local function jobid_problem(jobid)
  local ok, method, err = pcall(core.build_get, "job", jobid)
  if not ok then
    local why = tostring(method)
    return why:match("%(([^()]*)%)$") or (why:gsub("^[^\n]-:%d+: ", "", 1))
  end
  if not method then return tostring(err) end
end

-- Option `name` (a number of seconds) made a number: up to 1e9, and from 1 or above 0 as
-- `range` says ("from 1 to 1e9" or "above 0"), which the usage error repeats.
local function seconds_option(opts, name, range)
  local given = opts[name]
  if not given then return end
  local secs = tonumber(given)
  local low_ok = secs and (range == "above 0" and secs > 0 or secs >= 1)
  if not low_ok or secs ~= secs or secs > 1e9 then
    usage_error("option '--" .. name .. "' needs a number of seconds " .. range .. ", got '" ..
      given .. "'")
  end
  opts[name] = secs
end

local function check_command(words, opts)
  local command = words[1]
  if not command then usage_error("no command given") end
  local s = SUB[command]
  if not s then usage_error("unknown command '" .. command .. "'") end
  local args = { unpack(words, 2) }
  local form = s.forms[1]
  for _, f in ipairs(s.forms) do -- account add, account delete: by their first word
    if f.args[1] and f.args[1] == args[1] and f.args[1]:find("^%l") then form = f end
  end
  local said = command .. (form.args[1] and form.args[1]:find("^%l") and (" " .. form.args[1]) or "")
  for _, n in ipairs(form.needs) do
    if n ~= "yes" and not opts[n] then
      local o
      for _, x in ipairs(M.options) do if x.name == n then o = x end end
      usage_error(said .. " needs " .. option_head(o))
    end
  end
  for k, meta in ipairs(form.args) do
    if not args[k] and not meta:find("^%[") then
      usage_error(said .. " needs " .. (meta:find("^[AEIOU]") and "an " or "a ") ..
        meta:match("^[^|]*"))
    end
  end
  if args[#form.args + 1] then usage_error("unexpected argument '" .. args[#form.args + 1] .. "'") end
  for name in pairs(opts) do
    local needed, somewhere = false, false
    for _, f in ipairs(s.forms) do
      for _, n in ipairs(f.needs) do
        needed, somewhere = needed or (n == name and f == form), somewhere or n == name
      end
    end
    if somewhere and not needed then
      usage_error("option '--" .. name .. "' only applies to " .. command .. " " ..
        (name == "server" and "add" or "delete"))
    end
  end
  for name in pairs(opts) do
    if not (OPTIONS[name].all or OPTIONS[name][command]) then
      usage_error("option '--" .. name .. "' does not apply to " .. command)
    end
  end
  for _, n in ipairs(form.needs) do
    if n == "yes" and not opts.yes then -- "delete every saved face": "delall deletes every..."
      usage_error(said .. " " .. form.summary:gsub("^(%l+)", "%1s") .. ": add --yes to confirm")
    end
  end
  if opts.concurrency then
    local n = tointeger(tonumber(opts.concurrency))
    if not n or n < 1 then
      usage_error("option '--concurrency' needs a whole number from 1, got '" ..
        opts.concurrency .. "'")
    end
    opts.concurrency = n
  end
  seconds_option(opts, "lease", "from 1 to 1e9")
  if opts.state and opts.state:find("^redis://") then
    local ok, why = ledger.parse_redis(opts.state)
    if not ok then usage_error("option '--state': " .. why .. ", got '" .. opts.state .. "'") end
  end
  seconds_option(opts, "interval", "above 0")
  if opts.channels then
    local list = {}
    for id in opts.channels:gmatch("[^,]+") do list[#list + 1] = id end
    if opts.channels ~= "all" and #list == 0 then
      usage_error("option '--channels' needs all or channel ids separated by commas")
    end
    opts.channels = opts.channels == "all" and "all" or list
  end
  for _, id in ipairs(type(opts.channels) == "table" and opts.channels or { opts.channel }) do
    local why = prompt_problem("x", id)
    if why then usage_error("option '--channel" .. (opts.channels and "s" or "") .. "': " .. why) end
  end
  return command, args
end

---------------------------------------------------------------------------------------------
-- Output
---------------------------------------------------------------------------------------------

-- Credits left of the total, everywhere (job, account): "796/800 left".
local function credits_left(left, total)
  return tostring(left or "?") .. "/" .. tostring(total or "?") .. " left"
end

-- The readable form of a job: one "name  value" line each.
local function job_lines(job, files)
  local lines = { "jobid    " .. tostring(job.jobid), "status   " .. tostring(job.status) }
  if job.credits then
    local left = job.credits_left and job.credits_total and
      (" (" .. credits_left(job.credits_left, job.credits_total) .. ")") or ""
    lines[#lines + 1] = "credits  " .. job.credits .. left
  end
  if job.error then lines[#lines + 1] = "error    " .. tostring(job.error) end
  for _, url in ipairs(job:urls()) do lines[#lines + 1] = "url      " .. url end
  for _, path in ipairs(files or {}) do lines[#lines + 1] = "file     " .. path end
  return table.concat(lines, "\n")
end

-- "JOBID STATUS FILES...", the one-line form.
local function job_line(job, files)
  return table.concat({ tostring(job.jobid), tostring(job.status), unpack(files or {}) }, " ")
end

---------------------------------------------------------------------------------------------
-- Downloads
---------------------------------------------------------------------------------------------

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function make_dir(dir)
  local status = os.execute("mkdir -p -- " .. shell_quote(dir) .. " 2>/dev/null")
  if status == true or status == 0 then return true end -- 0: Lua 5.1's exit status
  return nil, "cannot create directory " .. dir
end

-- Whether two files hold the same bytes (read a piece at a time: neither is held whole).
local function same_bytes(a, b)
  local fa, fb = io.open(a, "rb"), io.open(b, "rb")
  local same = fa ~= nil and fb ~= nil
  while same do
    local x, y = fa:read(65536), fb:read(65536)
    if x ~= y then same = false elseif x == nil then break end
  end
  if fa then fa:close() end
  if fb then fb:close() end
  return same
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- DIR/<jobid>-<n>.<ext>, split into the part before the extension and the extension: the
-- jobid comes from the server, so only its safe characters make it into the name.
local function file_name(jobid, n, url)
  local path = url:match("^[^?#]*"):gsub("^%a[%w+.-]*://[^/]*", "")
  local ext = path:match("%.(%w+)$")
  if not ext or #ext > 10 then ext = "bin" end
  return tostring(jobid):gsub("[^%w_-]", "_") .. "-" .. n, ext
end

-- Moves the downloaded file `part` to dir/stem.ext, never over another file: a file already
-- there with the same bytes is kept (part removed); one with other bytes (or that cannot be
-- read) makes it dir/stem.1.ext (.2, ...) and a warning. Returns the path, or nil and a
-- message. The name is taken with core.link_new, which fails if it exists: a file another
-- process makes there meanwhile is never replaced. (A file system without hard links gets a
-- look, then a rename.)
local function place(dir, stem, ext, part, note)
  local first = dir .. "/" .. stem .. "." .. ext
  local path = first
  for k = 1, 1000 do
    local ok, err, why = core.link_new(part, path)
    if why == "unsupported" and not exists(path) then
      ok, err = os.rename(part, path)
      why = not ok and "error" or nil
    end
    if ok then
      if path ~= first then
        note("warning: " .. first .. " exists with other bytes; saved " .. path .. " instead")
      end
      return path
    end
    if why == "error" then
      os.remove(part)
      return nil, err
    end
    if same_bytes(path, part) then
      os.remove(part)
      note(path .. " is already there")
      return path
    end
    path = dir .. "/" .. stem .. "." .. k .. "." .. ext
  end
  os.remove(part)
  return nil, first .. ": too many files of that name"
end

-- Downloads every result of a job into dir, each streamed to a file beside its final name
-- (client:download's path: nothing held in memory, never a partial file under that name),
-- then put in place; returns the saved paths and whether all went well.
local function download_job(client, job, dir, note)
  local files, all_ok = {}, true
  for n, url in ipairs(job:urls()) do
    local stem, ext = file_name(job.jobid, n, url)
    local part = dir .. "/." .. stem .. "." .. ext .. ".download"
    local bytes, err = client:download(url, { path = part })
    local path
    if bytes then path, err = place(dir, stem, ext, part, note) end
    if path then
      files[#files + 1] = path
    else
      all_ok = false
      note("download of " .. url .. " failed: " .. tostring(err))
    end
  end
  return files, all_ok
end

---------------------------------------------------------------------------------------------
-- Commands: each gets the context and its argument, and returns the exit status.
---------------------------------------------------------------------------------------------

local commands = {}

-- How to add an account, said when there is none (by `account`, and after a 402).
local NO_ACCOUNT = "no account configured: add one with 'faceswap account add CHANNEL " ..
  "--server ID' (the Discord token from $DISCORD_TOKEN or standard input)"

-- Whether the server has no account configured (asked after a 402, which says no more than
-- "Account has no subscription or subscription expired").
local function no_account(ctx, err)
  if type(err) == "string" or err.code ~= 402 or not ctx.client then return false end
  local accounts = ctx.client:accounts()
  return accounts ~= nil and next(accounts) == nil
end

local function fail(ctx, err)
  if ctx.status_line then ctx.stderr:write("\n") end
  if ctx.json then
    ctx.err(json_error(err))
  else
    ctx.err("faceswap: " .. tostring(err))
    if no_account(ctx, err) then ctx.note(NO_ACCOUNT) end
  end
  return 1
end

-- A failed poll is shown as it happens (on a terminal, on the status line; elsewhere a line);
-- the wait gives up after a few in a row (client:wait's max_failures).
-- While one job is waited for: on a terminal a live line, rewritten in place on stderr at
-- each poll ("faceswap: job JOBID: started, 12.3s, 5 polls"); elsewhere a line per change of
-- status ("faceswap: job JOBID: started").
local function wait_options(opts, ctx, jobid)
  if not ctx then return { interval = opts.interval } end -- (batch: its own status line)
  local started, polls, status = core.now(), 0, nil
  local function show()
    if not ctx.tty then return end
    ctx.stderr:write(string.format("\rfaceswap: job %s: %s, %.1fs, %d poll%s\27[K", tostring(jobid),
      status or "waiting", core.now() - started, polls, polls == 1 and "" or "s"))
    ctx.status_line = true
  end
  ctx.on_poll = function()
    polls = polls + 1
    show()
  end
  show()
  return { interval = opts.interval, on_update = function(job)
    status = tostring(job.status)
    if ctx.tty then show() else ctx.note("job " .. tostring(jobid) .. ": " .. status) end
  end, on_error = function(err, n)
    local line = "poll " .. n .. " failed: " .. tostring(err)
    if ctx.tty then ctx.stderr:write("\rfaceswap: ", line, "\27[K") else ctx.note(line) end
    ctx.status_line = ctx.tty
  end }
end

-- After a wait: downloads a completed job's results; a job that ended otherwise is a failure.
local function finish(ctx, job)
  local files, status = nil, 0
  if ctx.status_line then -- a failed poll's line, now over
    ctx.stderr:write("\r\27[K")
    ctx.status_line = false
  end
  if ctx.opts.download and job.status == "completed" then
    local ok
    files, ok = download_job(ctx.client, job, ctx.opts.download, ctx.note)
    if not ok then status = 1 end
  end
  if job.status ~= "completed" then
    ctx.err("faceswap: job " .. tostring(job.jobid) .. " ended " .. tostring(job.status) ..
      (job.error and (": " .. tostring(job.error)) or ""))
    status = 1
  end
  return files, status
end

function commands.headshot(ctx, _, prompt)
  local o = ctx.opts
  local job, err = ctx.client:headshot { prompt = prompt, channel = o.channel,
                                         replyUrl = o["reply-url"], replyRef = o["reply-ref"],
                                         options = o.options }
  if not job then return fail(ctx, err) end
  local files, status = nil, 0
  if o.wait or o.download then
    job, err = ctx.client:wait(job, wait_options(o, ctx, job.jobid))
    if not job then return fail(ctx, err) end
    files, status = finish(ctx, job)
  end
  ctx.out(o.json and unslash(job:json()) or job_line(job, files))
  return status
end

function commands.job(ctx, _, jobid)
  local job, err = ctx.client:job(jobid)
  if not job then return fail(ctx, err) end
  ctx.out(ctx.opts.json and unslash(job:json()) or job_lines(job))
  return 0
end

function commands.wait(ctx, _, jobid)
  local job, err = ctx.client:wait(jobid, wait_options(ctx.opts, ctx, jobid))
  if not job then return fail(ctx, err) end
  local files, status = finish(ctx, job)
  ctx.out(ctx.opts.json and unslash(job:json()) or job_lines(job, files))
  return status
end

function commands.cancel(ctx, _, jobid)
  local job, err = ctx.client:cancel(jobid)
  if not job then return fail(ctx, err) end
  ctx.out(job_line(job))
  return 0
end

-- The prompts of a batch: the lines of the file or stdin but blank ones and comments (a line
-- whose first non-blank character is #), and their line numbers.
local function read_prompts(ctx, source)
  local text, err
  if source == "-" then
    text, err = ctx.stdin:read("*a")
  else
    local f
    f, err = io.open(source, "rb")
    if f then
      -- (a directory opens, and then fails to read)
      local ok, bytes, why = pcall(f.read, f, "*a")
      f:close()
      text, err = ok and bytes or nil, ok and why or bytes
      if not text then err = source .. ": " .. tostring(err or "cannot be read") end
    end
  end
  if not text then return nil, err end
  local prompts, numbers, n = {}, {}, 0
  for line in text:gmatch("([^\n]*)\n?") do
    n = n + 1
    line = line:gsub("\r$", "")
    if line:find("%S") and not line:find("^%s*#") then
      prompts[#prompts + 1], numbers[#prompts + 1] = line, n
    end
  end
  return prompts, numbers
end

-- The batch's progress on stderr: on a terminal one status line rewritten in place; elsewhere
-- a plain line per item as it ends, and the counts once at the end.
local function progress(ctx, total)
  local p = { done = 0, flight = 0, failed = 0, lost = 0, polls_failed = 0 }
  local started = faceswap.now()
  local function text()
    return string.format("%d/%d done, %d in flight, %d failed%s%s, %.1fs%s", p.done, total,
      p.flight, p.failed, p.lost > 0 and (", " .. p.lost .. " with failed downloads") or "",
      p.polls_failed > 0 and (", " .. p.polls_failed .. " failed polls (last: " ..
        p.last_poll_error:sub(1, 60) .. ")") or "",
      faceswap.now() - started, p.waiting and (" (" .. p.waiting .. ")") or "")
  end
  function p.poll_failed(err)
    p.polls_failed, p.last_poll_error = p.polls_failed + 1, tostring(err)
    p.update()
  end
  function p.update()
    if ctx.tty then ctx.stderr:write("\r", text(), "\27[K") end
  end
  function p.item(line)
    if ctx.tty then p.update() else ctx.err(line) end
  end
  function p.note(message)
    if ctx.tty then ctx.stderr:write("\r\27[K") end
    ctx.err("faceswap: " .. message)
    p.update()
  end
  -- a retry's wait, shown until the next answer comes (nil)
  function p.wait(message)
    p.waiting = message
    if ctx.tty then p.update() elseif message then ctx.err("faceswap: " .. message) end
  end
  function p.finish()
    if ctx.tty then
      p.update()
      ctx.stderr:write("\n")
    else
      ctx.err(text())
    end
  end
  return p
end

-- Whether an error says a headshot got no answer but may have reached the server.
local function fate_unknown(err)
  return err.sent == true and err.job == nil and
    (err.kind == "transport" or err.kind == "timeout" or err.kind == "cancelled")
end

-- An item of a batch has ended (x its job, or the error it got): counted, shown, and its
-- files downloaded with --download (files[i]).
local function show_ended(client, o, p, files, i, x, is_job)
  p.done = p.done + 1
  if not is_job or x.status ~= "completed" then p.failed = p.failed + 1 end
  p.item(is_job and (i .. " " .. tostring(x.jobid) .. " " .. tostring(x.status))
    or (i .. " error " .. tostring(x)))
  if is_job and o.download and x.status == "completed" then
    local ok
    files[i], ok = download_job(client, x, o.download, p.note)
    if not ok then
      p.lost = p.lost + 1
      p.update()
    end
  end
end

-- The batch itself, with its ledger open (book, and the records read from it) or none.
local function run_batch(ctx, prompts, numbers, book, records)
  local o = ctx.opts
  local client = ctx.client
  local p = progress(ctx, #prompts)
  ctx.wait_line = p.wait
  local state, files, results = {}, {}, {} -- per item: nil, "flight" or "done"; paths; result
  local fixed = {} -- per item: its output line, known without asking (done before, bad record)

  -- the ledger: a record per step of an item; the first write that fails stops submissions
  local broken -- why the state file could not be written
  local fresh_item, unknown_recorded = {}, {}
  local function record(i, kind, fields)
    if not book or broken then return not broken end
    local r = { state = kind, line = numbers[i], prompt = prompts[i] }
    for k, v in pairs(fields or {}) do r[k] = v end
    local ok, err = book:write(r)
    if not ok then broken = err end
    return ok == true
  end

  local function on_update(i, x)
    if state[i] == "done" then return end
    local is_job = faceswap.type(x) == "job"
    if is_job and not state[i] and fresh_item[i] then record(i, "submitted", { jobid = x.jobid }) end
    if is_job and not x:done() then
      if not state[i] then
        state[i], p.flight = "flight", p.flight + 1
        p.update()
      end
      return
    end
    if is_job then
      record(i, "done", { jobid = x.jobid, status = x.status })
    elseif fresh_item[i] and x.job == nil then
      -- its fate is written down the moment it is known: a kill now loses nothing
      local unknown = fate_unknown(x)
      record(i, unknown and "unknown" or "failed", { error = ctx.redact(tostring(x)) })
      unknown_recorded[i] = unknown or nil
    end
    if state[i] == "flight" then p.flight = p.flight - 1 end
    state[i] = "done"
    show_ended(client, o, p, files, i, x, is_job)
  end
  local w = wait_options(o)
  w.on_error = p.poll_failed

  -- what an earlier run of this state file submitted is waited for, what ended is shown as
  -- it ended; the rest is submitted, but for prompts whose fate is unknown, unless the user
  -- says so
  local fresh, index, resumed, unknown = {}, {}, {}, {}
  local before = { done = 0, completed = 0, wait = 0, unknown = 0 }
  for i = 1, #prompts do
    local r = records[numbers[i]]
    local kind = r and r.state
    local bad = (kind == "submitted" or kind == "done") and jobid_problem(r.jobid)
    if bad then
      fixed[i] = "- error " .. o.state .. ":" .. r.n .. ": the recorded jobid cannot be asked for (" ..
        bad .. ")"
      p.done, p.failed = p.done + 1, p.failed + 1
      p.item(i .. " error " .. o.state .. ":" .. r.n .. ": bad jobid (" .. bad .. ")")
    elseif kind == "done" then
      fixed[i] = r.jobid .. " " .. tostring(r.status)
      before.done = before.done + 1
      p.done = p.done + 1
      if r.status == "completed" then
        before.completed = before.completed + 1
      else
        p.failed = p.failed + 1
      end
    elseif kind == "submitted" then
      before.wait = before.wait + 1
      local wi = {}
      for k, v in pairs(w) do wi[k] = v end
      wi.on_update = function(job) on_update(i, job) end
      resumed[#resumed + 1] = { i = i, jobid = r.jobid, task = client:spawn(function()
        local job, err = client:wait(r.jobid, wi)
        results[i] = job or err
        if not job then on_update(i, err) end
      end) }
    elseif (kind == "sending" or kind == "unknown") and not o["resubmit-unknown"] then
      before.unknown = before.unknown + 1
      unknown[#unknown + 1] = i
      results[i] = false
    else
      fresh[#fresh + 1], index[#fresh + 1] = prompts[i], i
      fresh_item[i] = true
    end
  end
  if next(records) then -- a rerun: one line says where the batch stands
    local parts = {}
    if before.done > 0 then
      parts[#parts + 1] = before.done .. " done before (" .. before.completed .. " completed)"
    end
    if before.wait > 0 then parts[#parts + 1] = before.wait .. " submitted, waited for" end
    if before.unknown > 0 then parts[#parts + 1] = before.unknown .. " of unknown fate" end
    parts[#parts + 1] = #fresh > 0 and (#fresh .. " to submit") or "nothing to submit"
    p.note(o.state .. ": " .. #prompts .. " prompts: " .. table.concat(parts, ", "))
  end
  for _, i in ipairs(unknown) do
    p.note("line " .. numbers[i] .. ": " .. prompts[i] .. ": fate unknown: its headshot may have " ..
      "reached the server; not resubmitted (--resubmit-unknown to submit it again)")
  end
  p.update()

  if ctx.catch_signals ~= false then core.catch_signals(true) end
  -- stop: on a signal; or once the ledger cannot be written and no headshot is on its way
  local posting = {}
  local function stop()
    return core.interrupted() or (broken ~= nil and next(posting) == nil)
  end
  local on_send = book and function(k, attempt)
    if broken then return false, "not sent: " .. broken end
    local i = index[k]
    if not record(i, "sending", { attempt = attempt }) then return false, "not sent: " .. broken end
    posting[k] = true
    return true
  end
  local out, batch_err = client:batch(fresh, { concurrency = o.concurrency, wait = w,
    stop = stop, channels = o.channels, on_send = on_send or nil, on_update = function(k, x)
      posting[k] = nil
      on_update(index[k], x)
    end })
  if not out then -- channels "all" and no list of accounts: nothing was submitted
    if ctx.catch_signals ~= false then core.catch_signals(false) end
    for _, r in ipairs(resumed) do r.task:cancel() end
    return fail(ctx, batch_err)
  end
  while not stop() and client:step(0) > 0 do client:step(3600) end -- the resumed waits
  local signal = core.interrupted()
  if ctx.catch_signals ~= false then core.catch_signals(false) end
  for _, r in ipairs(resumed) do r.task:cancel() end
  for k, r in ipairs(out) do
    local i = index[k]
    results[i] = r
    if faceswap.type(r) == "error" and fate_unknown(r) then
      if not unknown_recorded[i] then record(i, "unknown", { error = ctx.redact(tostring(r)) }) end
      unknown[#unknown + 1] = i
    end
  end
  for _, r in ipairs(resumed) do
    results[r.i] = results[r.i] or { kind = "cancelled", jobid = r.jobid }
  end
  for i = 1, #prompts do -- items the updates missed, if any
    local r = results[i]
    if r and r.kind ~= "cancelled" then on_update(i, r) end
  end
  p.finish()

  local running = {} -- submitted, not finished here: "line N: JOBID"
  -- under --json: {"line": N, "prompt": ..., "job": {...}} or {..., "error": {...}} a line
  local function item(i, job_json, err, kind)
    local tail = job_json and ('"job":' .. unslash(job_json)) or json_error(err, kind):sub(2, -2)
    if files[i] and job_json then tail = tail .. ',"files":' .. json(files[i]) end
    return '{"line":' .. numbers[i] .. ',"prompt":' .. json(prompts[i]) .. "," .. tail .. "}"
  end
  for i = 1, #prompts do
    local r = results[i]
    if fixed[i] then
      ctx.out(not o.json and fixed[i] or (fixed[i]:find("^%- error ") and
        item(i, nil, fixed[i]:sub(9), "state") or item(i, '{"jobid":' ..
        json(fixed[i]:match("^%S+")) .. ',"status":' .. json(fixed[i]:match("%S+$")) .. "}")))
    elseif faceswap.type(r) == "job" then
      ctx.out(o.json and item(i, r:json()) or job_line(r, files[i]))
    elseif r and r.kind == "cancelled" and state[i] ~= "done" then -- stopped, not ended
      local jobid = r.job and r.job.jobid or r.jobid
      if jobid then running[#running + 1] = { i, jobid } end
    elseif r then
      ctx.out(o.json and item(i, nil, r) or
        ((r.job and tostring(r.job.jobid) or "-") .. " error " .. tostring(r)))
    elseif r == false then
      local text = "not resubmitted: its headshot may or may not have reached the server"
      ctx.out(o.json and item(i, nil, text, "unknown") or ("- error unknown: " .. text))
    end
  end
  local status = (p.failed > 0 or p.lost > 0 or #unknown > 0) and 1 or 0
  if broken then
    ctx.note(broken .. ": the state file cannot be written: stopped submitting")
    status = 1
  end
  if signal or broken then
    ctx.note((signal and "interrupted: " or "") .. "stopped submitting; " .. #running ..
      " submitted job(s) go on upstream (billed); follow each with:")
    for _, r in ipairs(running) do
      ctx.note("  line " .. numbers[r[1]] .. ": faceswap wait " .. r[2] ..
        (o.download and (" --download " .. shell_quote(o.download)) or ""))
    end
    if signal then status = 130 end
  end
  for _, i in ipairs(unknown) do
    if results[i] ~= false then
      ctx.note("line " .. numbers[i] .. ": " .. prompts[i] .. ": fate unknown: its headshot may " ..
        "or may not have reached the server (no answer came)")
    end
  end
  if o.state and (signal or broken or #unknown > 0) then
    ctx.note("rerun with --state " .. o.state .. " to wait for the jobs submitted and submit " ..
      "the prompts that never were")
  end
  return status
end

-- `batch FILE --state redis://HOST:PORT/DB/NAME`: a ledger in Redis that every batch of the same
-- FILE shares (lua/faceswap/ledger.lua, client:batch's ledger): each prompt is claimed, sent by
-- one of them, its result recorded there; this one prints every prompt's result, its own or
-- another's.
local function run_shared(ctx, prompts, numbers)
  local o, client = ctx.opts, ctx.client
  local book, problem, why = ledger.open_batch(o.state, prompts, { sched = client._sched,
    lease = client._coordinator and client._coordinator.lease, log = client._log,
    resubmit_unknown = o["resubmit-unknown"] == true })
  if not book then
    if why == "other_list" then
      ctx.err(ctx.json and json_error(problem, "other_list") or ("faceswap: " .. problem))
      return 2
    end
    return fail(ctx, problem)
  end
  local p = progress(ctx, #prompts)
  ctx.wait_line = p.wait
  local b, resubmit = book.before, o["resubmit-unknown"] == true
  if b.done + b.submitted + b.failed + b.unknown > 0 then -- a rerun: where the batch stands
    local parts = {}
    if b.done > 0 then parts[#parts + 1] = b.done .. " done before" end
    if b.submitted > 0 then
      parts[#parts + 1] = b.submitted .. " submitted (" .. b.elsewhere .. " followed elsewhere)"
    end
    if b.failed > 0 then parts[#parts + 1] = b.failed .. " failed before (submitted again)" end
    if b.unknown > 0 then
      parts[#parts + 1] = b.unknown .. " of unknown fate" .. (resubmit and
        " (submitted again: --resubmit-unknown)" or "")
    end
    local todo = b.todo + b.failed + (resubmit and b.unknown or 0)
    parts[#parts + 1] = todo > 0 and (todo .. " to submit") or "nothing to submit"
    p.note(o.state .. ": " .. #prompts .. " prompts: " .. table.concat(parts, ", "))
  end

  local files, ended = {}, {}
  local function on_update(i, x)
    if ended[i] then return end
    local is_job = faceswap.type(x) == "job"
    if is_job and not x:done() then return end
    ended[i] = true
    show_ended(client, o, p, files, i, x, is_job)
  end
  local w = wait_options(o)
  w.on_error = p.poll_failed
  if ctx.catch_signals ~= false then core.catch_signals(true) end
  local out, batch_err = client:batch(prompts, { ledger = book, concurrency = o.concurrency,
    wait = w, channels = o.channels, stop = core.interrupted, on_update = on_update,
    resubmit_unknown = resubmit })
  local signal = core.interrupted()
  if ctx.catch_signals ~= false then core.catch_signals(false) end
  book:close()
  if not out then return fail(ctx, batch_err) end
  p.finish()

  local status, unknown = 0, {}
  for i = 1, #prompts do
    local r = out[i]
    if faceswap.type(r) == "job" then
      if r.status ~= "completed" then status = 1 end
      ctx.out(o.json and ('{"line":' .. numbers[i] .. ',"prompt":' .. json(prompts[i]) ..
        ',"job":' .. unslash(r:json()) .. (files[i] and (',"files":' .. json(files[i])) or "") ..
        "}") or job_line(r, files[i]))
    else
      status = 1
      local text = tostring(r)
      if r.unknown then
        text = "not resubmitted: its headshot may or may not have reached the server"
        unknown[#unknown + 1] = { i, "its headshot may have reached the server; not " ..
          "resubmitted (--resubmit-unknown to submit it again)" }
      elseif ledger.fate_unknown(r) then
        unknown[#unknown + 1] = { i, "its headshot may or may not have reached the server " ..
          "(no answer came)" }
      end
      ctx.out(o.json and ('{"line":' .. numbers[i] .. ',"prompt":' .. json(prompts[i]) .. "," ..
        json_error(text, r.unknown and "unknown" or r.kind):sub(2, -2) .. "}") or
        ((r.job and tostring(r.job.jobid) or "-") .. " error " .. (r.unknown and "unknown: " or "") ..
          text))
    end
  end
  if p.lost > 0 then status = 1 end
  for _, u in ipairs(unknown) do
    ctx.note("line " .. numbers[u[1]] .. ": " .. prompts[u[1]] .. ": fate unknown: " .. u[2])
  end
  if out.ledger_error then
    ctx.note(out.ledger_error .. ": stopped submitting")
  end
  if signal then
    ctx.note("interrupted: stopped submitting; the jobs submitted go on upstream (billed); " ..
      "rerun with --state " .. o.state .. " to follow them and submit the rest")
    status = 130
  end
  return status
end

function commands.batch(ctx, _, source)
  local o = ctx.opts
  local prompts, numbers = read_prompts(ctx, source)
  if not prompts then return fail(ctx, numbers) end
  -- every line is checked before anything is sent
  for i = 1, #prompts do
    local why = prompt_problem(prompts[i])
    if why then
      return fail(ctx, (source == "-" and "stdin" or source) .. ":" .. numbers[i] .. ": " .. why ..
        "; nothing was sent")
    end
  end
  if not o.state then return run_batch(ctx, prompts, numbers, nil, {}) end
  if o.state:find("^redis://") then return run_shared(ctx, prompts, numbers) end
  local book, problem, why = ledger.open(o.state)
  if not book then
    if why == "locked" then -- one writer: another batch has this state file
      ctx.err(ctx.json and json_error(problem .. "; nothing was sent", "locked") or
        ("faceswap: " .. problem .. "; nothing was sent"))
      return 2
    end
    return fail(ctx, problem)
  end
  local by_line = {}
  for i = 1, #prompts do by_line[numbers[i]] = prompts[i] end
  local records
  records, problem = book:load(by_line)
  if not records then
    book:close()
    return fail(ctx, problem)
  end
  local status = run_batch(ctx, prompts, numbers, book, records)
  book:close() -- (a raise leaves it to the process's end, which releases the lock too)
  return status
end

-- Every command of the table without a function of its own: the arguments fill the
-- required fields in order; the answer is a job, waited for with --wait (or --download) when
-- it is one to wait for; its content (the bot's reply) is shown.
function commands.generic(ctx, name, ...)
  local o, c = ctx.opts, TABLE[name]
  local params, k = { channel = o.channel, replyUrl = o["reply-url"], replyRef = o["reply-ref"],
                      options = o.options }, 0
  for _, f in ipairs(c.fields) do
    if f.required then
      k = k + 1
      params[f.name] = (select(k, ...))
    end
  end
  local job, err = ctx.client[name](ctx.client, params)
  if not job then return fail(ctx, err) end
  if (o.wait or o.download) and job.status ~= nil and not job:done() then
    job, err = ctx.client:wait(job, wait_options(o, ctx, job.jobid))
    if not job then return fail(ctx, err) end
  end
  local files, status = nil, 0
  if job.status ~= nil and job.status ~= "completed" and (job:done() or o.wait) then
    files, status = finish(ctx, job)
  elseif o.download then
    local ok
    files, ok = download_job(ctx.client, job, o.download, ctx.note)
    status = ok and 0 or 1
  end
  if o.json then
    ctx.out(unslash(job:json()))
  else
    ctx.out(job_lines(job, files) .. (job.content and ("\ncontent  " .. job.content) or ""))
  end
  return status
end

function commands.jobs(ctx)
  local ids, err = ctx.client:jobs()
  if not ids then return fail(ctx, err) end
  if ctx.opts.json then
    ctx.out(#ids == 0 and "[]" or json(ids))
  else
    for _, id in ipairs(ids) do ctx.out(id) end
  end
  return 0
end

-- One account as a line: channel, server, credits left/total, the masked token.
local function account_line(a)
  local credits = type(a.credits) == "table" and a.credits or {}
  local used, total = tonumber(credits.used), tonumber(credits.total)
  return string.format("%s  server %s  credits %s  discord %s", tostring(a.channel),
    tostring(a.server), credits_left(used and total and total - used, credits.total),
    tostring(a.discord))
end

function commands.account(ctx, _, sub, channel)
  local client = ctx.client
  if sub == "add" then
    -- the token comes from the environment or stdin: on the command line, `ps` would show it
    local token = ctx.getenv("DISCORD_TOKEN")
    if not token or token == "" then
      -- typed on a terminal: asked for, and not shown
      local typed = ctx.stdin == io.stdin and core.isatty(0)
      if typed then
        ctx.stderr:write("Discord token: ")
        os.execute("stty -echo 2>/dev/null")
      end
      token = (ctx.stdin:read("*l") or ""):gsub("%s+$", "")
      if typed then
        os.execute("stty echo 2>/dev/null")
        ctx.stderr:write("\n")
      end
    end
    if token == "" then
      ctx.err("faceswap: no Discord token: set DISCORD_TOKEN or write it on standard input")
      return 2
    end
    ctx.secrets[#ctx.secrets + 1] = token
    local ok, err = client:add_account { channel = channel, server = ctx.opts.server,
                                         discord = token }
    if not ok then return fail(ctx, err) end
    ctx.out("added account " .. channel)
    return 0
  elseif sub == "delete" then
    local ok, err = client:delete_account(channel)
    if not ok then return fail(ctx, err) end
    ctx.out("deleted account " .. channel)
    return 0
  end
  local accounts, err
  if sub then
    local one
    one, err = client:account(sub)
    accounts = one and { [sub] = one }
  else
    accounts, err = client:accounts()
  end
  if not accounts then return fail(ctx, err) end
  local channels = {}
  for id, a in pairs(accounts) do
    a.channel = a.channel or id
    channels[#channels + 1] = id
  end
  table.sort(channels)
  if ctx.opts.json then
    ctx.out(json(sub and accounts[sub] or accounts))
  else
    for _, id in ipairs(channels) do ctx.out(account_line(accounts[id])) end
    if not sub and #channels == 0 then ctx.note(NO_ACCOUNT) end
  end
  return 0
end

---------------------------------------------------------------------------------------------
-- main
---------------------------------------------------------------------------------------------

local function run(args, ctx)
  if #args == 0 then
    ctx.stdout:write(M.usage)
    return 2
  end
  for _, a in ipairs(args) do -- (no shell passes one; an embedding program might)
    if a:find("\0", 1, true) then usage_error("an argument contains a NUL byte") end
  end
  for _, a in ipairs(args) do -- (errors as JSON from the first: --json may come last)
    if a == "--" then break end
    if a == "--json" then ctx.json = true end
  end
  local words, opts = parse(args)
  if words[1] == "help" or opts.help then -- `faceswap help [COMMAND]`, `faceswap [COMMAND] --help`
    local name = words[1]
    if name == "help" then name = words[2] end
    if words[1] == "help" and words[3] then usage_error("unexpected argument '" .. words[3] .. "'") end
    if name and not SUB[name] then usage_error("unknown command '" .. name .. "'") end
    ctx.stdout:write(name and M.help(name) or M.usage)
    return 0
  end
  if opts.version then
    ctx.out(faceswap._VERSION)
    return 0
  end
  local command, arguments = check_command(words, opts)
  ctx.opts = opts
  local token = ctx.getenv("USEAPI_TOKEN")
  if not token or token == "" then usage_error("no token: set USEAPI_TOKEN") end
  ctx.secrets[#ctx.secrets + 1] = token
  local base_url = opts["base-url"] or ctx.getenv("USEAPI_BASE_URL")
  if base_url == "" then base_url = nil end
  -- retry waits on the status line (the batch's, until that request is answered) or a line
  -- of their own; $FACESWAP_LOG's lines as from the library
  local default_log, waiting = logs.default(), nil
  local client_options = { token = token, base_url = base_url, log = function(level, message, what)
    if default_log then default_log(level, message, what) end
    if what == "retry" then
      waiting = message:match("^(.-): ")
      ctx.wait_line(message)
    elseif what == "answer" and ctx.on_poll and message:find("^GET /jobs/%?jobid=") then
      ctx.on_poll()
    end
    if what == "answer" and waiting and message:sub(1, #waiting + 2) == waiting .. ": " then
      waiting = nil
      ctx.wait_line(nil)
    end
  end }
  -- the accounts are shared where --coordinator says, else $FACESWAP_COORDINATOR, else through
  -- the Redis of a --state redis:// ledger, else in this process
  local coordinator = opts.coordinator or ctx.getenv("FACESWAP_COORDINATOR")
  if (coordinator == nil or coordinator == "") and opts.state and opts.state:find("^redis://") then
    coordinator = ledger.parse_redis(opts.state)
  end
  client_options.coordinator, client_options.lease = coordinator or "", opts.lease
  for k, v in pairs(ctx.options or {}) do client_options[k] = v end
  local ok, client = pcall(faceswap.new, client_options)
  if not ok then
    -- "bad argument #1 to 'new' (bad option 'base_url' (must start with https://))"
    local message = tostring(client)
    local bad = message:match("option 'coordinator'.*$")
    if bad then -- a bad URL, or a Redis out of reach
      ctx.err("faceswap: " .. bad:gsub("%)$", ""))
      return 1
    end
    local why = message:match("%(([^()]*)%)%)$") or message
    if message:find("option 'token'", 1, true) then -- never echo the token itself
      usage_error("bad USEAPI_TOKEN: " .. why)
    end
    usage_error("bad base URL '" .. tostring(base_url) .. "': " .. why)
  end
  if opts.download then
    opts.download = opts.download:gsub("(.)/+$", "%1")
    local made, err = make_dir(opts.download)
    if not made then
      client:close()
      return fail(ctx, err)
    end
  end
  ctx.client = client
  local status = (commands[command] or commands.generic)(ctx, command, unpack(arguments))
  client:close()
  return status
end

-- A stream whose writes have the secrets (the list, as it grows) replaced.
local function redacting(stream, secrets)
  return { write = function(self, ...)
    local parts, n = { ... }, select("#", ...)
    for k = 1, n do
      if type(parts[k]) == "string" then parts[k] = logs.redact(parts[k], secrets) end
    end
    stream:write(unpack(parts, 1, n))
    return self
  end }
end

-- A client method's "bad argument" raised at a line of this file is what the user typed (a
-- prompt, jobid, idname or channel with a control byte or not UTF-8...): its reason, or nil.
local function misuse_reason(e)
  if type(e) ~= "string" then return nil end
  local where, reason = e:match("^([^\n]-):%d+: bad argument #%d+ to '[%w_]+' %((.*)%)$")
  if where and where:find("faceswap[/\\.]cli") then return reason end
end

function M.main(args, streams)
  streams = streams or {}
  local ctx = {
    stdout = streams.stdout or io.stdout,
    stderr = streams.stderr or io.stderr,
    stdin = streams.stdin or io.stdin,
    getenv = streams.getenv or os.getenv,
    options = streams.options,
    catch_signals = streams.catch_signals, -- false: leave SIGINT and SIGTERM alone
  }
  if streams.tty ~= nil then ctx.tty = streams.tty else ctx.tty = core.isatty(2) end
  -- the tokens never leave in what is printed or recorded, whoever echoed them back
  ctx.secrets = {}
  function ctx.redact(text) return logs.redact(text, ctx.secrets) end
  ctx.stdout, ctx.stderr = redacting(ctx.stdout, ctx.secrets), redacting(ctx.stderr, ctx.secrets)
  function ctx.out(line) ctx.stdout:write(line, "\n") end
  function ctx.err(line) ctx.stderr:write(line, "\n") end
  function ctx.note(message) ctx.err("faceswap: " .. message) end
  function ctx.wait_line(message) if message then ctx.note(message) end end
  local list = {}
  for i = 1, #(args or {}) do list[i] = tostring(args[i]) end
  -- (5.1's xpcall passes no arguments on)
  local ok, status = xpcall(function() return run(list, ctx) end, function(e)
    if type(e) == "table" and e[1] == Usage then return e end
    local reason = misuse_reason(e)
    if reason then return { Usage, reason } end
    return debug.traceback(e, 2) -- a bug: raise it with where it happened
  end)
  if ok then return status end
  if type(status) == "table" then
    if ctx.json then
      ctx.err(json_error(status[2], "usage"))
    else
      ctx.err("faceswap: " .. status[2])
      ctx.err(HINT)
    end
    return 2
  end
  error(status, 0)
end

return M
