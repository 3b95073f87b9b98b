-- The command table (csrc/command.c) with no network: core.commands(), and for every command
-- the request core.build_command makes (method, path, exact body), its local 400 texts, the
-- uploads' checks, and how core.read_response reads the answers that are not jobs.
local core = require "faceswap.core"

local PNG = "\137PNG\r\n\26\n" .. "rest of a png"
-- a boundary that no file of these specs contains (a one-letter one would be replaced)
local B = "boundary-of-the-specs"
local face = "spec/support/demo-face.png"

local function plain(err)
  return setmetatable(err, nil)
end

local function expect_400(text, ...)
  local method, err = core.build_command(...)
  assert.is_nil(method)
  assert.equal("error", core.type(err))
  assert.same({ kind = "invalid_request", code = 400, error = text, retryable = false,
                sent = false }, plain(err))
end

-- A local problem with an upload: no code, since no server said it.
local function expect_local(text, ...)
  local method, err = core.build_command(...)
  assert.is_nil(method)
  assert.same({ kind = "invalid_request", error = text, retryable = false, sent = false },
    plain(err))
end

local function part(b, name, value)
  return "--" .. b .. "\r\nContent-Disposition: form-data; name=\"" .. name .. "\"\r\n\r\n" ..
    value .. "\r\n"
end

local function file_part(b, name, filename, ctype, data)
  return "--" .. b .. "\r\nContent-Disposition: form-data; name=\"" .. name ..
    "\"; filename=\"" .. filename .. "\"\r\nContent-Type: " .. ctype .. "\r\n\r\n" .. data ..
    "\r\n"
end

local read = require("spec.support.shell").contents

local tmpfiles = {}
local function tmpfile(data)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  tmpfiles[#tmpfiles + 1] = path
  return path
end
teardown(function() for _, p in ipairs(tmpfiles) do os.remove(p) end end)

describe("core.commands #unit", function()
  it("lists every command of the family, each with its method, path, mode and fields", function()
    local rows = {}
    for _, c in ipairs(core.commands()) do
      local fields = {}
      for _, f in ipairs(c.fields) do
        fields[#fields + 1] = f.name .. ":" .. f.kind .. (f.required and "!" or "")
      end
      rows[#rows + 1] = table.concat({ c.name, c.method, c.path, c.mode, c.answer,
        table.concat(fields, ",") }, " ")
    end
    assert.same({
      "headshot POST /headshot job job prompt:prose!,options:text",
      "saveid POST /saveid blocking job idname:text!,image:file!",
      "swapid POST /swapid blocking job idname:text!,image:file!",
      "listid POST /listid blocking job ",
      "setid POST /setid blocking job idname:text!",
      "delid DELETE /delid blocking job idname:text!",
      "delall DELETE /delall blocking job ",
      "inswapper POST /inswapper blocking job targetMessageId:text!",
      "picsi POST /picsi either job source_image:file!,target_image_gif_or_video:file!,options:text",
      "changebg POST /changebg job job image:file!,a_background_photo_of:prose!,options:text",
      "jobs GET /jobs none jobids ",
      "accounts GET /account none accounts ",
      "account GET /account/<channel> none account ",
      "add_account POST /account/<channel> none none discord:text!,server:text!,channel:text!",
      "delete_account DELETE /account/<channel> none none ",
    }, rows)
  end)
end)

describe("core.commands(\"all\") #unit", function()
  local rows = {}
  for _, c in ipairs(core.commands("all")) do rows[c.name] = c end

  it("adds the rows of job and cancel, which the client and command line write by hand", function()
    local names = {}
    for _, c in ipairs(core.commands("all")) do names[#names + 1] = c.name end
    local listed = {}
    for _, c in ipairs(core.commands()) do listed[#listed + 1] = c.name end
    listed[#listed + 1], listed[#listed + 2] = "job", "cancel"
    assert.same(listed, names)
    assert.same({ "GET", "/jobs/?jobid=<jobid>", "jobid", "jobid", "none", "job" },
      { rows.job.method, rows.job.path, rows.job.query, rows.job.value, rows.job.mode,
        rows.job.answer })
    assert.equal("/jobs/cancel/?jobid=<jobid>", rows.cancel.path)
    assert.same({ { name = "jobid", kind = "text", required = true, metavar = "JOBID",
      common = false, at = "query" } }, rows.cancel.params)
  end)

  it("says each command's encodings, attachments, confirmation and metavars", function()
    assert.same({ "multipart", "json" }, rows.headshot.encodings)
    assert.same({ "multipart" }, rows.saveid.encodings)
    assert.same({ "json" }, rows.add_account.encodings)
    assert.is_nil(rows.jobs.encodings)
    local attach, confirm = {}, {}
    for _, c in ipairs(core.commands("all")) do
      if c.attachments then attach[#attach + 1] = c.name end
      if c.confirm then confirm[#confirm + 1] = c.name end
    end
    assert.same({ "headshot", "swapid", "inswapper", "picsi", "changebg" }, attach)
    assert.same({ "delall" }, confirm)
    local metavars = {}
    for _, c in ipairs(core.commands()) do
      for _, f in ipairs(c.fields) do metavars[#metavars + 1] = f.metavar end
    end
    assert.same({ "PROMPT", "OPTIONS", "IDNAME", "IMAGE", "IDNAME", "IMAGE", "IDNAME", "IDNAME",
      "MESSAGE_ID", "SOURCE", "TARGET", "OPTIONS", "IMAGE", "PROMPT", "OPTIONS", "DISCORD",
      "SERVER", "CHANNEL" }, metavars)
    local order = {}
    for _, f in ipairs(rows.headshot.params) do order[#order + 1] = f.name end
    assert.same({ "prompt", "channel", "replyUrl", "replyRef", "options" }, order)
    assert.equal("prompt", rows.headshot.value)
    assert.equal("path and body", rows.add_account.params[3].at)
  end)

  it("refuses another list", function()
    assert.has_error(function() core.commands("some") end,
      "bad argument #1 to 'commands' (invalid option 'some')")
  end)
end)

describe("docs/commands.md #unit", function()
  it("shows the command table the core describes", function()
    local markdown = require("tools.commands_table").markdown(core.commands())
    local f = assert(io.open("docs/commands.md", "rb"))
    local doc = f:read("*a")
    f:close()
    assert.truthy(doc:find(markdown, 1, true), "run make docs-tables")
  end)
end)

describe("core.build_command #unit", function()
  it("builds saveid from a path: the file's bytes, its last path component, its type", function()
    local method, path, ctype, body, channel = core.build_command("saveid",
      { idname = "me", image = face, replyRef = "r1" }, "123", "https://cb.example/x", B)
    assert.equal("POST", method)
    assert.equal("/saveid", path)
    assert.equal("multipart/form-data; boundary=" .. B, ctype)
    assert.equal("123", channel)
    -- the file stays on disk: the body reads it as it is sent (body:read() reads it all now)
    assert.equal("userdata", type(body))
    local want = part(B, "idname", "me") ..
      file_part(B, "image", "demo-face.png", "image/png", read(face)) ..
      part(B, "channel", "123") .. part(B, "replyUrl", "https://cb.example/x") ..
      part(B, "replyRef", "r1") .. "--" .. B .. "--\r\n"
    assert.equal(#want, #body)
    assert.equal(want, body:read())
  end)

  it("takes {data, filename, content_type}, sanitising the filename for the header", function()
    local _, _, _, body = core.build_command("swapid", { idname = "me,you", image = {
      data = "not sniffed", filename = "a\"b\r\nc\\d.jpg", content_type = "image/jpeg" } },
      nil, nil, B)
    assert.equal(part(B, "idname", "me,you") ..
      file_part(B, "image", "a_b__c_d.jpg", "image/jpeg", "not sniffed") .. "--" .. B .. "--\r\n", body)
  end)

  it("takes the type from the bytes: PNG, JPEG, GIF, WebP, MP4", function()
    local kinds = {
      ["image/png"] = PNG, ["image/jpeg"] = "\255\216\255\224xx", ["image/gif"] = "GIF89a..",
      ["image/webp"] = "RIFF\0\0\0\0WEBPVP8 ", ["video/mp4"] = "\0\0\0\24ftypmp42",
    }
    for want, data in pairs(kinds) do
      local _, _, _, body = core.build_command("picsi", { source_image = { data = PNG,
        filename = "s.png" }, target_image_gif_or_video = { data = data, filename = "t" } },
        nil, nil, B)
      assert.equal(file_part(B, "source_image", "s.png", "image/png", PNG) ..
        file_part(B, "target_image_gif_or_video", "t", want, data) .. "--" .. B .. "--\r\n", body)
    end
  end)

  it("replaces a boundary that occurs inside a binary part, or a filename", function()
    local data = PNG .. "\0\255\r\n--COLLIDE\r\n\0"
    local _, _, ctype, body = core.build_command("saveid", { idname = "me",
      image = { data = data, filename = "f.png" } }, nil, nil, "COLLIDE")
    local b = ctype:match("boundary=(.*)$")
    assert.are_not.equal("COLLIDE", b)
    assert.equal(part(b, "idname", "me") .. file_part(b, "image", "f.png", "image/png", data) ..
      "--" .. b .. "--\r\n", body)
    _, _, ctype = core.build_command("saveid", { idname = "me",
      image = { data = PNG, filename = "COLLIDE.png" } }, nil, nil, "COLLIDE")
    assert.are_not.equal("multipart/form-data; boundary=COLLIDE", ctype)
  end)

  it("replaces a boundary that occurs inside a file read by its path", function()
    -- in its first bytes (those sniffed), and far past them, across the 64 KiB pieces a
    -- boundary the caller gave is looked for in
    for _, data in ipairs { PNG .. "\0\r\n--COLLIDE\r\n\255",
                            PNG .. ("\0"):rep(65536 - #PNG - 3) .. "\r\n--COLLIDE\r\n\255" } do
      local path = tmpfile(data)
      local _, _, ctype, body = core.build_command("saveid", { idname = "me", image = path },
        nil, nil, "COLLIDE")
      local b = ctype:match("boundary=(.*)$")
      assert.are_not.equal("COLLIDE", b)
      assert.matches("^faceswap%-%w+$", b)
      assert.equal(part(b, "idname", "me") .. file_part(b, "image", path:match("[^/]*$"),
        "image/png", data) .. "--" .. b .. "--\r\n", body:read())
    end
  end)

  it("draws a boundary of 22 random characters for a file it does not scan", function()
    -- 62^22 > 2^130: the file's bytes are not searched for it, only what is in memory
    local seen = {}
    for _ = 1, 50 do
      local _, _, ctype = core.build_command("saveid", { idname = "me", image = face })
      local b = ctype:match("^multipart/form%-data; boundary=faceswap%-(%w+)$")
      assert.equal(22, #b)
      assert.is_nil(seen[b])
      seen[b] = true
    end
  end)

  it("takes the type of a file shorter than the longest signature from its bytes", function()
    local path = tmpfile("\255\216\255")
    local _, _, _, body = core.build_command("saveid", { idname = "me", image = path }, nil, nil, B)
    assert.equal(part(B, "idname", "me") .. file_part(B, "image", path:match("[^/]*$"),
      "image/jpeg", "\255\216\255") .. "--" .. B .. "--\r\n", body:read())
  end)

  it("builds the commands without fields, with the client's default channel", function()
    for _, name in ipairs { "listid", "delall" } do
      local method, path, _, body, channel = core.build_command(name, nil, "77", nil, B)
      assert.equal(name == "listid" and "POST" or "DELETE", method)
      assert.equal("/" .. name, path)
      assert.equal(part(B, "channel", "77") .. "--" .. B .. "--\r\n", body)
      assert.equal("77", channel)
    end
    local _, _, _, body, channel = core.build_command("listid", { channel = "9",
      replyRef = "line one\n\tline two" }, "77", nil, B)
    assert.equal(part(B, "channel", "9") .. part(B, "replyRef", "line one\n\tline two") ..
      "--" .. B .. "--\r\n", body)
    assert.equal("9", channel)
  end)

  it("builds setid, delid (DELETE with a form body), inswapper and changebg", function()
    local cases = {
      { "setid", { idname = "me" }, "POST", part(B, "idname", "me") },
      { "delid", { idname = "me" }, "DELETE", part(B, "idname", "me") },
      { "inswapper", { targetMessageId = "1234" }, "POST", part(B, "targetMessageId", "1234") },
      { "changebg", { image = { data = PNG, filename = "p.png" },
        a_background_photo_of = "a beach\nat dusk", options = "-s" }, "POST",
        file_part(B, "image", "p.png", "image/png", PNG) ..
        part(B, "a_background_photo_of", "a beach\nat dusk") .. part(B, "options", "-s") },
    }
    for _, c in ipairs(cases) do
      local method, path, _, body, channel = core.build_command(c[1], c[2], nil, nil, B)
      assert.equal(c[3], method)
      assert.equal("/" .. c[1], path)
      assert.equal(c[4] .. "--" .. B .. "--\r\n", body)
      assert.is_nil(channel)
    end
  end)

  it("builds the GETs of /jobs and the accounts, with the channel in the path", function()
    assert.same({ "GET", "/jobs" }, { core.build_command("jobs") })
    assert.same({ "GET", "/account" }, { core.build_command("accounts") })
    local m, p, ct, body, channel = core.build_command("account", "12 3/4")
    assert.same({ "GET", "/account/12%203%2F4", nil, nil, "12 3/4" }, { m, p, ct, body, channel })
    assert.same({ "DELETE", "/account/55", nil, nil, "55" },
      { core.build_command("delete_account", "55") })
  end)

  it("percent-encodes the channel as one path segment: no dot segment, no slash", function()
    local cases = {
      { "../x", "/account/..%2Fx" }, { "...", "/account/..." }, { "%2E", "/account/%252E" },
      { "a/./b", "/account/a%2F.%2Fb" }, { "é?#", "/account/%C3%A9%3F%23" },
      { ".a", "/account/.a" },
    }
    for _, c in ipairs(cases) do
      assert.same({ "GET", c[2], nil, nil, c[1] }, { core.build_command("account", c[1]) })
      assert.same({ "DELETE", c[2], nil, nil, c[1] },
        { core.build_command("delete_account", c[1]) })
    end
    -- the jobid of GET /jobs/ goes through the same encoder
    assert.same({ "GET", "/jobs/?jobid=a%2F..%2Fb%26c%3D1" },
      { core.build_get("job", "a/../b&c=1") })
  end)

  it("builds headshot, job and cancel from their rows, as build_headshot and build_get", function()
    local params = { prompt = "a/b \"q\"\n", replyRef = "r", options = "-s" }
    local want = { core.build_headshot(params, "multipart", "7", "https://d/cb", B) }
    want[5] = "7"
    assert.same(want, { core.build_command("headshot", params, "7", "https://d/cb", B) })
    assert.equal(part(B, "prompt", "a/b \"q\"\n") .. part(B, "channel", "7") ..
      part(B, "replyUrl", "https://d/cb") .. part(B, "replyRef", "r") .. part(B, "options", "-s") ..
      "--" .. B .. "--\r\n", want[4])
    local _, _, ct, body = core.build_command("headshot", "p", "7", nil, nil, "json")
    assert.same({ "application/json", '{"prompt":"p","channel":"7"}' }, { ct, body })
    assert.same({ core.build_get("cancel", "a b") }, { core.build_command("cancel", "a b") })
    assert.same({ "GET", "/jobs/?jobid=j%2F1" },
      { core.build_command("job", core.decode('{"jobid":"j/1","status":"started"}')) })
    assert.has_error(function() core.build_command("job", 5) end,
      "bad argument #1 to 'job' (jobid must be a string or a job, got number)")
    assert.has_error(function() core.build_command("saveid", {}, nil, nil, nil, "json") end,
      "bad argument #1 to 'saveid' (encoding must be \"multipart\", got \"json\")")
    assert.has_error(function() core.build_command("jobs", nil, nil, nil, nil, "json") end,
      "bad argument #1 to 'jobs' (no body to encode, got encoding \"json\")")
    local method, err = core.build_command("job", "")
    assert.is_nil(method)
    assert.same({ kind = "invalid_request", code = 400, error = "Query param jobid not provided",
      retryable = false, sent = false }, plain(err))
  end)

  it("names the boundary it used in the content type, every byte of it", function()
    local _, _, ct, body = core.build_command("listid", nil, "7", nil, "spec\0b")
    assert.equal("multipart/form-data; boundary=spec\0b", ct)
    assert.equal(part("spec\0b", "channel", "7") .. "--spec\0b--\r\n", body)
  end)

  it("holds one channel rule everywhere: \".\" and \"..\" are never a channel", function()
    local function why(what, channel)
      return "bad argument #1 to '" .. what .. "' (channel \"" .. channel ..
        "\" is not a channel id: a URL path cannot carry \".\" or \"..\")"
    end
    for _, dots in ipairs { ".", ".." } do
      assert.has_error(function() core.build_command("account", dots) end, why("account", dots))
      assert.has_error(function() core.build_command("delete_account", dots) end,
        why("delete_account", dots))
      assert.has_error(function() core.build_command("add_account", { channel = dots,
        server = "1", discord = "t" }) end, why("add_account", dots))
      assert.has_error(function() core.build_command("listid", { channel = dots }) end,
        why("listid", dots))
      assert.has_error(function() core.build_command("listid", nil, dots) end, why("listid", dots))
      assert.has_error(function() core.build_command("saveid", { idname = "me", image = face },
        dots) end, why("saveid", dots))
      assert.has_error(function() core.build_headshot({ prompt = "p", channel = dots }) end,
        why("headshot", dots))
      assert.has_error(function() core.build_headshot("p", "json", dots) end,
        why("headshot", dots))
    end
    -- the same rule's other half, as before: text on one line
    assert.has_error(function() core.build_command("account", "1\n2") end,
      "bad argument #1 to 'account' (channel contains control byte 0x0A)")
    assert.has_error(function() core.build_headshot({ prompt = "p", channel = "\255" }) end,
      "bad argument #1 to 'headshot' (channel is not valid UTF-8)")
  end)

  it("builds add_account as JSON {discord, server, channel}", function()
    local method, path, ctype, body, channel = core.build_command("add_account",
      { discord = "tok\"en\\", server = "222", channel = "1234567890" }, "999")
    assert.equal("POST", method)
    assert.equal("/account/1234567890", path)
    assert.equal("application/json", ctype)
    assert.equal('{"discord":"tok\\"en\\\\","server":"222","channel":"1234567890"}', body)
    assert.equal("1234567890", channel)
  end)

  it("answers the server's 400 texts before sending", function()
    expect_400("Required param idname is missing or empty", "saveid", { image = face })
    expect_400("Required param image is missing or empty", "saveid", { idname = "me" })
    expect_400("Required param idname is missing or empty", "swapid", { idname = "", image = face })
    expect_400("Required param idname is missing or empty", "setid", {})
    expect_400("Required param idname is missing or empty", "delid", {})
    expect_400("Required param targetMessageId is missing or empty", "inswapper", {})
    expect_400("Required param source_image is missing or empty", "picsi",
      { target_image_gif_or_video = face })
    expect_400("Required param target_image_gif_or_video is missing or empty", "picsi",
      { source_image = face })
    expect_400("Required param image is missing or empty", "changebg",
      { a_background_photo_of = "sea" })
    expect_400("Required param a_background_photo_of is missing or empty", "changebg",
      { image = face })
    expect_400("Optional param replyRef is too long", "listid", { replyRef = ("é"):rep(1025) })
    expect_400("Optional param replyUrl is too long", "listid", nil, nil, ("u"):rep(1025))
    expect_400("Required param channel is missing or empty", "account", "")
    expect_400("Required param channel is missing or empty", "delete_account", "")
  end)

  it("answers add_account's documented 400 texts in their order", function()
    expect_400("Required param discord is missing or empty", "add_account", { server = "1" })
    expect_400("Required param server is missing or empty", "add_account",
      { discord = "t", channel = "1" })
    expect_400("Required param channel is missing or empty", "add_account",
      { discord = "t", server = "1" })
    expect_400("Required param channel (12a) is not valid Discord channel id", "add_account",
      { discord = "t", server = "1", channel = "12a" })
    expect_400("Required param channel (123456789012345678901) is not valid Discord channel id",
      "add_account", { discord = "t", server = "1", channel = "123456789012345678901" })
  end)

  it("refuses uploads it cannot send, before anything is sent, with a clear text", function()
    expect_local("image: cannot read /no/such/file.png: No such file or directory", "saveid",
      { idname = "me", image = "/no/such/file.png" })
    expect_local("image: cannot read spec: Is a directory", "saveid",
      { idname = "me", image = "spec" })
    local empty = tmpfile("")
    expect_local("image: " .. empty:match("[^/]*$") .. " is empty", "saveid",
      { idname = "me", image = empty })
    expect_local("image: x.png is empty", "saveid",
      { idname = "me", image = { data = "", filename = "x.png" } })
    expect_local("image: notes.txt is not a PNG, JPEG, GIF, WebP or MP4 file", "saveid",
      { idname = "me", image = { data = "hello", filename = "notes.txt" } })
    local text = tmpfile("just text")
    expect_local("image: " .. text:match("[^/]*$") .. " is not a PNG, JPEG, GIF, WebP or MP4 file",
      "saveid", { idname = "me", image = text })
    expect_local("image: big.png is 27262976 bytes, over the 26214400-byte (25 MiB) limit on " ..
      "uploads", "saveid", { idname = "me", image = { data = PNG .. ("x"):rep(26 * 1048576 - #PNG),
      filename = "big.png" } })
  end)

  it("says the exact sizes of an upload one byte over the cap, and takes one at the cap", function()
    local cap = 25 * 1048576
    expect_local("image: big.png is 26214401 bytes, over the 26214400-byte (25 MiB) limit on " ..
      "uploads", "saveid", { idname = "me", image = { data = PNG .. ("x"):rep(cap + 1 - #PNG),
      filename = "big.png" } })
    local path = tmpfile(PNG)
    assert(os.execute("truncate -s " .. (cap + 1) .. " " .. path))
    expect_local("image: " .. path .. " is 26214401 bytes, over the 26214400-byte (25 MiB) " ..
      "limit on uploads", "saveid", { idname = "me", image = path })
    assert(os.execute("truncate -s " .. cap .. " " .. path))
    local method, _, _, body = core.build_command("saveid", { idname = "me", image = path },
      nil, nil, B)
    assert.equal("POST", method)
    assert.equal(#part(B, "idname", "me") + #file_part(B, "image", path:match("[^/]*$"),
      "image/png", "") + cap + #("--" .. B .. "--\r\n"), #body)
  end)

  it("refuses a file over the cap by its size, without reading it", function()
    local path = os.tmpname()
    tmpfiles[#tmpfiles + 1] = path
    -- a sparse file: its size says 30 MiB, no disk is used
    assert(os.execute("truncate -s 30M " .. path))
    expect_local("image: " .. path .. " is 31457280 bytes, over the 26214400-byte (25 MiB) " ..
      "limit on uploads", "saveid", { idname = "me", image = path })
  end)

  it("reads only a regular file: a FIFO, a device or a directory is refused unopened", function()
    local dir = require("spec.support.shell").tmpdir()
    local fifo = dir .. "/pipe.png"
    assert(os.execute("mkfifo " .. fifo))
    -- a writer holds the FIFO open (Linux opens a FIFO "r+" at once), so that code that opens
    -- it fails here instead of blocking; then, with no writer, opening would block for ever
    local holder = assert(io.open(fifo, "r+"))
    local ok, err = pcall(expect_local, "image: cannot read " .. fifo ..
      ": not a regular file (a FIFO)", "saveid", { idname = "me", image = fifo })
    holder:close()
    assert(ok, err)
    expect_local("image: cannot read " .. fifo .. ": not a regular file (a FIFO)", "saveid",
      { idname = "me", image = fifo })
    expect_local("source_image: cannot read " .. fifo .. ": not a regular file (a FIFO)",
      "picsi", { source_image = fifo, target_image_gif_or_video = face })
    expect_local("image: cannot read /dev/null: not a regular file (a character device)",
      "saveid", { idname = "me", image = "/dev/null" })
    expect_local("image: cannot read " .. dir .. ": Is a directory", "saveid",
      { idname = "me", image = dir })
    os.remove(fifo)
    os.remove(dir)
  end)

  it("takes an ISO-BMFF file as MP4 only when its brands say MP4 video", function()
    -- an ftyp box: size, "ftyp", major brand, minor version, compatible brands
    local function ftyp(major, ...)
      local compat = table.concat { ... }
      local size = 16 + #compat
      return string.char(0, 0, math.floor(size / 256), size % 256) .. "ftyp" .. major ..
        "\0\0\2\0" .. compat .. "\0\0\0\8free"
    end
    local function build(data)
      return core.build_command("picsi", { source_image = { data = PNG, filename = "s.png" },
        target_image_gif_or_video = { data = data, filename = "t.mp4" } }, nil, nil, B)
    end
    local videos = {
      ftyp("isom", "isom", "iso2", "avc1", "mp41"), ftyp("mp42", "mp42", "isom"),
      ftyp("mp41"), ftyp("iso5", "iso6", "mp41"), ftyp("avc1"), ftyp("M4V ", "M4V ", "mp42"),
      ftyp("XAVC", "XAVC", "mp42", "iso2"), -- a camera's own brand, compatible with MP4
    }
    for _, data in ipairs(videos) do
      local _, _, _, body = build(data)
      assert.equal(file_part(B, "source_image", "s.png", "image/png", PNG) ..
        file_part(B, "target_image_gif_or_video", "t.mp4", "video/mp4", data) .. "--" .. B ..
        "--\r\n", body)
    end
    local not_taken = ", not a PNG, JPEG, GIF, WebP or MP4 file"
    local refused = {
      { ftyp("heic", "mif1", "heic"), 'a HEIC image (ISO-BMFF brand "heic")' },
      { ftyp("heix", "mif1", "heix"), 'a HEIC image (ISO-BMFF brand "heix")' },
      { ftyp("mif1", "mif1", "heic"), 'a HEIC image (ISO-BMFF brand "heic")' },
      { ftyp("mif1", "mif1", "miaf"), 'a HEIF image (ISO-BMFF brand "mif1")' },
      { ftyp("msf1", "msf1", "iso8"), 'a HEIF image sequence (ISO-BMFF brand "msf1")' },
      { ftyp("avif", "avif", "mif1", "miaf", "MA1B"), 'an AVIF image (ISO-BMFF brand "avif")' },
      { ftyp("mif1", "mif1", "avif", "miaf"), 'an AVIF image (ISO-BMFF brand "avif")' },
      { ftyp("avis", "avis", "msf1", "iso8", "mif1", "miaf"),
        'an AVIF image sequence (ISO-BMFF brand "avis")' },
      { ftyp("M4A ", "M4A ", "mp42", "isom"), 'an MP4 audio file (ISO-BMFF brand "M4A ")' },
      { ftyp("qt  ", "qt  "), 'a QuickTime movie (ISO-BMFF brand "qt  ")' },
      { ftyp("abcd", "abcd", "isom", "heic"), 'a HEIC image (ISO-BMFF brand "heic")' },
      { ftyp("abcd", "abcd"), 'an ISO-BMFF file of unknown brand "abcd"' },
      { ftyp('"\1\255x'), 'an ISO-BMFF file of unknown brand "\\x22\\x01\\xFFx"' },
      { string.char(0, 0, 0, 10) .. "ftyp\0\0mp42", "an ISO-BMFF file without a brand" },
    }
    for _, c in ipairs(refused) do
      expect_local("target_image_gif_or_video: t.mp4 is " .. c[2] .. not_taken, "picsi",
        { source_image = { data = PNG, filename = "s.png" },
          target_image_gif_or_video = { data = c[1], filename = "t.mp4" } })
    end
    -- read from a path, the brands are read too, and a type given is taken as given
    local heic = tmpfile(ftyp("heic", "mif1", "heic") .. ("\0"):rep(100))
    expect_local("image: " .. heic:match("[^/]*$") .. ' is a HEIC image (ISO-BMFF brand "heic")' ..
      not_taken, "saveid", { idname = "me", image = heic })
    local _, _, _, body = core.build_command("saveid", { idname = "me", image = { data = "x",
      filename = "p.heic", content_type = "image/heic" } }, nil, nil, B)
    assert.equal(part(B, "idname", "me") .. file_part(B, "image", "p.heic", "image/heic", "x") ..
      "--" .. B .. "--\r\n", body)
  end)

  it("raises for misuse, naming the command and the argument", function()
    assert.has_error(function() core.build_command("saveid", { idname = "me", imag = "x" }) end,
      "bad argument #1 to 'saveid' (unknown param 'imag')")
    assert.has_error(function() core.build_command("saveid", { idname = 5, image = face }) end,
      "bad argument #1 to 'saveid' (idname must be a string, got number)")
    assert.has_error(function() core.build_command("saveid", { idname = "a\nb", image = face }) end,
      "bad argument #1 to 'saveid' (idname contains control byte 0x0A)")
    assert.has_error(function() core.build_command("saveid", { idname = "me",
      image = face .. "\0.txt" }) end, "bad argument #1 to 'saveid' (image path contains a zero byte)")
    assert.has_error(function() core.build_command("saveid", { idname = "me", image = true }) end,
      "bad argument #1 to 'saveid' (image must be a file path or a table {data = bytes, " ..
      "filename = name}, got boolean)")
    assert.has_error(function() core.build_command("saveid", { idname = "me",
      image = { data = PNG } }) end, "bad argument #1 to 'saveid' (image.filename is missing)")
    assert.has_error(function() core.build_command("saveid", { idname = "me",
      image = { filename = "x" } }) end, "bad argument #1 to 'saveid' (image.data is missing)")
    assert.has_error(function() core.build_command("saveid", { idname = "me",
      image = { data = PNG, filename = "x", type = "image/png" } }) end,
      "bad argument #1 to 'saveid' (image: unknown field 'type' in a file table)")
    assert.has_error(function() core.build_command("saveid", { idname = "me",
      image = { data = PNG, filename = 1 } }) end,
      "bad argument #1 to 'saveid' (image.filename must be a string, got number)")
    assert.has_error(function() core.build_command("setid", "me") end,
      "bad argument #1 to 'setid' (table expected, got string)")
    assert.has_error(function() core.build_command("jobs", {}) end,
      "bad argument #1 to 'jobs' (no params expected, got table)")
    assert.has_error(function() core.build_command("account", nil) end,
      "bad argument #1 to 'account' (channel must be a string, got nil)")
    assert.has_error(function() core.build_command("nope") end,
      "bad argument #1 to 'build_command' (unknown command 'nope')")
  end)
end)

describe("core.read_response for the commands #unit", function()
  it("reads a blocking command's job-shaped result", function()
    local job = core.read_response("saveid", 200, "", '{"jobid":"j1","verb":"faceswap-saveid",' ..
      '"status":"completed","content":"saved as me"}')
    assert.equal("job", core.type(job))
    assert.same({ "j1", "faceswap-saveid", "completed", "saved as me" },
      { job.jobid, job.verb, job.status, job.content })
  end)

  it("reads the jobid array of GET /jobs, of strings or of objects with a jobid", function()
    assert.same({ "a", "b" }, core.read_response("jobs", 200, "", '["a","b"]'))
    assert.same({}, core.read_response("jobs", 200, "", '[]'))
    assert.same({ "a", "b", "c" }, core.read_response("jobs", 200, "",
      '["a",{"jobid":"b","status":"started"},{"jobid":"c"}]'))
    for _, bad in ipairs { '{"a":"b"}', '["a",1]', '["a",null]', '"a"', '[{"id":"x"}]',
                           '[{"jobid":5}]' } do
      local v, err = core.read_response("jobs", 200, "", bad)
      assert.is_nil(v)
      assert.same({ "bad_response", 200, "HTTP 200 answer is not an array of jobids" },
        { err.kind, err.code, err.error })
    end
  end)

  it("reads accounts keyed by channel, each with its channel", function()
    local accounts = core.read_response("accounts", 200, "", '{"111":{"server":"9",' ..
      '"discord":"abc…secured…xyz","credits":{"total":800,"used":4,' ..
      '"timestamp":"2024-01-01T00:00:00.000Z"}},"222":{"channel":"222","server":"8"}}')
    assert.same({
      ["111"] = { channel = "111", server = "9", discord = "abc…secured…xyz",
        credits = { total = 800, used = 4, timestamp = "2024-01-01T00:00:00.000Z" } },
      ["222"] = { channel = "222", server = "8" },
    }, accounts)
    local function refused(op, body)
      local v, err = core.read_response(op, 200, "", body)
      assert.is_nil(v)
      return err.error
    end
    assert.equal("HTTP 200 answer is not an account object", refused("accounts", '{"111":"x"}'))
    assert.equal("HTTP 200 answer is not an account: field server is not a string",
      refused("account", '{"server":1}'))
    assert.equal("HTTP 200 answer is not an account: field credits is not an object",
      refused("account", '{"credits":"lots"}'))
    assert.same({ channel = "1", credits = { used = 1 } },
      core.read_response("account", 200, "", '{"channel":"1","credits":{"used":1}}'))
    assert.equal("HTTP 200 answer is not an object", refused("account", ' [1]'))
    assert.equal("HTTP 200 answer is not an object", refused("accounts", '[]'))
  end)

  it("refuses accounts keyed by what the channel rule refuses: nothing then raises", function()
    for _, key in ipairs { ".", "..", "", "1\\n2", "\\u0000" } do
      local v, err = core.read_response("accounts", 200, "", '{"1":{},"' .. key .. '":{}}')
      assert.is_nil(v)
      assert.same({ "bad_response", 200, "HTTP 200 answer is not accounts keyed by channel" },
        { err.kind, err.code, err.error })
    end
    assert.same({ ["..."] = { channel = "..." }, [".a"] = { channel = ".a" } },
      core.read_response("accounts", 200, "", '{"...":{},".a":{}}'))
  end)

  it("reads 204 and any 2xx JSON of add_account and delete_account as true", function()
    assert.is_true(core.read_response("add_account", 204, "", ""))
    assert.is_true(core.read_response("delete_account", 200, "", '{"ok":1}'))
    local v, err = core.read_response("delete_account", 200, "", "<html>")
    assert.is_nil(v)
    assert.equal("bad_response", err.kind)
  end)

  it("reads errors as for headshot; a POST's 429 may be retried, its 5xx not", function()
    local _, err = core.read_response("add_account", 400, "",
      '{"error":"Channel 1 configuration has same discord value","code":400}')
    assert.same({ kind = "invalid_request", code = 400, retryable = false, sent = true,
      error = "Channel 1 configuration has same discord value" }, plain(err))
    _, err = core.read_response("saveid", 429, "",
      '{"error":"Unable to lock Discord after 3 attempts","code":429}')
    assert.is_true(err.retryable)
    _, err = core.read_response("saveid", 502, "", "bad gateway")
    assert.is_false(err.retryable)
    _, err = core.read_response("jobs", 502, "", "bad gateway")
    assert.is_true(err.retryable)
  end)
end)
