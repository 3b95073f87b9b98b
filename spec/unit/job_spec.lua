-- Job objects: read-only userdata with every upstream field by name, credits parsed from
-- `content`, done(), urls(), json() and equality; faceswap.decode for callback bodies.
local faceswap = require "faceswap"

local COMPLETED = [[{
  "jobid": "8a1f574fdbf79e8cd57e070476d9d5f3", "verb": "faceswap-headshot",
  "status": "completed", "prompt": "portrait --no green --square",
  "created": "2023-09-09T02:04:49.667Z", "updated": "2023-09-09T02:05:31.002Z",
  "discord": "ABC…secured…xyz", "server": "1000000000000000001",
  "channel": "1100000000000000001", "replyUrl": "https://example.com/cb", "replyRef": "r-1",
  "messageId": "1149891234567890123", "timestamp": "2023-09-09T02:04:50.123000+00:00",
  "content": "<@1> Picsi.Ai Headshot Job Submitted [jobid: 8a1f574fdbf79e8cd57e070476d9d5f3] [credits: 4] [prompt: 'portrait'] [time: 12s] [SaveID: 'me'] (796/800 credits remaining)",
  "error": null, "errorDetails": null, "code": 200,
  "attachments": [
    {"id": "1", "filename": "a_1.png", "size": 1234, "url": "https://cdn.example/a_1.png?ex=1&is=2&hm=3",
     "proxy_url": "https://media.example/a_1.png", "width": 512, "height": 512, "content_type": "image/png"},
    {"id": "2", "filename": "a_2.png", "size": 99, "url": "https://cdn.example/a_2.png",
     "proxy_url": null, "width": 8, "height": 8, "content_type": "image/png"}
  ],
  "embeds": [{"type": "rich", "description": "done", "image": {"url": "https://cdn.example/e.png", "width": 1}}],
  "future_field": {"kept": true}
}]]

describe("job objects #unit", function()
  local job
  before_each(function() job = assert(faceswap.decode(COMPLETED)) end)

  it("has every upstream field by name, exactly as sent", function()
    assert.equal("job", faceswap.type(job))
    local sent = { -- each field as upstream sent it, in its order
      { "jobid", "8a1f574fdbf79e8cd57e070476d9d5f3" }, { "verb", "faceswap-headshot" },
      { "status", "completed" }, { "prompt", "portrait --no green --square" },
      { "created", "2023-09-09T02:04:49.667Z" }, { "updated", "2023-09-09T02:05:31.002Z" },
      { "discord", "ABC…secured…xyz" }, { "server", "1000000000000000001" },
      { "channel", "1100000000000000001" }, { "replyUrl", "https://example.com/cb" },
      { "replyRef", "r-1" }, { "messageId", "1149891234567890123" },
      { "timestamp", "2023-09-09T02:04:50.123000+00:00" },
    }
    for _, field in ipairs(sent) do assert.equal(field[2], job[field[1]], field[1]) end
    assert.equal(200, job.code)
    assert.equal("200", tostring(job.code))   -- not 200.0 (math.type: 5.3+)
    if math.type then assert.equal("integer", math.type(job.code)) end
  end)

  it("gives nil for absent and null fields and for names a job does not have", function()
    assert.is_nil(job.error)
    assert.is_nil(job.errorDetails)
    assert.is_nil(job.future_field)
    assert.is_nil(job.nonsense)
    assert.is_nil(job[1])
  end)

  it("gives attachments and embeds as arrays, nulls dropped", function()
    assert.same({
      { id = "1", filename = "a_1.png", size = 1234, url = "https://cdn.example/a_1.png?ex=1&is=2&hm=3",
        proxy_url = "https://media.example/a_1.png", width = 512, height = 512,
        content_type = "image/png" },
      { id = "2", filename = "a_2.png", size = 99, url = "https://cdn.example/a_2.png", width = 8,
        height = 8, content_type = "image/png" },
    }, job.attachments)
    assert.same({ { type = "rich", description = "done",
                    image = { url = "https://cdn.example/e.png", width = 1 } } }, job.embeds)
  end)

  it("hands out copies of nested tables, so the job cannot be changed through them", function()
    job.attachments[1].url = "changed"
    assert.equal("https://cdn.example/a_1.png?ex=1&is=2&hm=3", job.attachments[1].url)
  end)

  it("parses credits from content", function()
    assert.equal(4, job.credits)
    assert.equal(796, job.credits_left)
    assert.equal(800, job.credits_total)
    local plain = assert(faceswap.decode('{"jobid":"j","content":"no numbers here (1/x credits remaining)"}'))
    assert.is_nil(plain.credits)
    assert.is_nil(plain.credits_left)
    assert.is_nil(plain.credits_total)
  end)

  it("reads the balance from the end, whatever the quoted prompt says", function()
    local j = assert(faceswap.decode('{"jobid":"j","content":"<@1> Picsi.Ai Headshot Job ' ..
      'Submitted [jobid: j] [credits: 4] [prompt: \'me (0/5 credits remaining) [credits: 9]\'] ' ..
      '[time: 12s] [SaveID: \'me\'] (796/800 credits remaining)"}'))
    assert.same({ 4, 796, 800 }, { j.credits, j.credits_left, j.credits_total })
  end)

  it("lists the attachment URLs", function()
    assert.same({ "https://cdn.example/a_1.png?ex=1&is=2&hm=3", "https://cdn.example/a_2.png" },
      job:urls())
    assert.same({}, assert(faceswap.decode('{"jobid":"j","status":"started"}')):urls())
  end)

  it("knows which statuses are terminal", function()
    for status, done in pairs { created = false, started = false, progress = false,
                                completed = true, failed = true, moderated = true,
                                cancelled = true, unheard_of = false } do
      local j = assert(faceswap.decode('{"jobid":"j","status":"' .. status .. '"}'))
      assert.equal(done, j:done(), status)
    end
  end)

  it("round-trips through json() and decode() to an equal job", function()
    assert.equal(COMPLETED, job:json())
    local again = assert(faceswap.decode(job:json()))
    assert.is_true(again == job)
    local reordered = assert(faceswap.decode('{"status":"started","jobid":"x"}'))
    assert.is_true(reordered == assert(faceswap.decode('{"jobid":"x","status":"started"}')))
    assert.is_false(reordered == assert(faceswap.decode('{"jobid":"x","status":"progress"}')))
  end)

  it("is read-only", function()
    assert.has_error(function() job.status = "failed" end,
      "faceswap.job is read-only (attempt to set field 'status')")
    assert.equal("faceswap.job is read-only", getmetatable(job))
  end)

  it("shows type, jobid and status in tostring", function()
    assert.equal("faceswap.job: 8a1f574fdbf79e8cd57e070476d9d5f3 (completed)", tostring(job))
  end)
end)

describe("faceswap.decode #unit", function()
  local function decode_error(text)
    local job, err = faceswap.decode(text)
    assert.is_nil(job)
    assert.equal("error", faceswap.type(err))
    assert.equal("bad_response", err.kind)
    assert.is_nil(err.code)
    return err.error
  end

  it("rejects what is not a job with a clear bad_response", function()
    for _, case in ipairs { -- { what the error says, the text decoded }
      { "invalid JSON: unexpected end of text at byte 13", '{"jobid":"a"' },
      { "invalid JSON: text after the value at byte 15", '{"jobid":"a"} x' },
      { "not a job: JSON is not an object", '["a"]' },
      { "not a job: no jobid string", '{"jobid":12}' },
      { "field embeds is not an array", '{"jobid":"a","embeds":"x"}' },
      { "invalid JSON: unexpected character at byte 10", '{"jobid":NaN}' },
      { "invalid JSON: nested too deeply at byte 66", ('['):rep(66) .. (']'):rep(66) },
    } do
      assert.equal(case[1], decode_error(case[2]))
    end
  end)

  it("reads escapes and surrogate pairs", function()
    local job = assert(faceswap.decode('{"jobid":"a\\u00e9\\ud83d\\ude00\\n\\"\\/"}'))
    assert.equal('aé😀\n"/', job.jobid)
    assert.equal("invalid JSON: lone surrogate in \\u escape at byte 11",
      decode_error('{"jobid":"\\ud83d"}'))
  end)

  it("reads member names spelled with escapes as what they mean", function()
    local job = assert(faceswap.decode('{"job\\u0069d":"x","st\\u0061tus":"completed"}'))
    assert.equal("x", job.jobid)
    assert.is_true(job:done())
  end)

  it("lets the last of duplicate members win, a null one included", function()
    local job = assert(faceswap.decode('{"jobid":"a","status":"started","status":"failed",' ..
      '"prompt":"p","prompt":null}'))
    assert.equal("failed", job.status)
    assert.is_nil(job.prompt)
    -- and equality, which decodes the whole text, agrees
    assert.is_true(job == assert(faceswap.decode('{"jobid":"a","status":"failed"}')))
  end)

  it("parses credits from content that carries escapes", function()
    local job = assert(faceswap.decode('{"jobid":"a","content":"[prompt: \\"x\\"] ' ..
      '[credits: 6] (10/20 credits remaining) \\u00e9"}'))
    assert.equal('[prompt: "x"] [credits: 6] (10/20 credits remaining) é', job.content)
    assert.same({ 6, 10, 20 }, { job.credits, job.credits_left, job.credits_total })
  end)

  it("keeps a NUL escaped as \\u0000", function()
    assert.equal("a\0b", assert(faceswap.decode('{"jobid":"a\\u0000b"}')).jobid)
  end)

  it("raises when given something other than a string", function()
    assert.has_error(function() faceswap.decode(nil) end,
      "bad argument #1 to 'decode' (string expected, got nil)")
  end)
end)

-- What a job keeps (issue 17, item 17): its JSON text and its documented fields, nothing else
-- of the answer, so a hostile answer within max_response cannot make a job hold tens of times
-- its bytes for as long as the program keeps it.
describe("reading answers one after another #unit", function()
  -- the reader compares each member's name first with the field met at the same place of the
  -- last answer it read: answers whose members differ, in number, order or kind, must each
  -- read as themselves, whichever came before
  it("reads each answer's own fields whatever the answer before held", function()
    local answers = {
      '{"jobid":"j1","status":"started","prompt":"p1","code":200}',
      '{"code":201,"extra":1,"prompt":"p2","jobid":"j2","verb":"v2"}',
      '{"status":"failed","jobid":"j3","other":"x","error":"e3","errorDetails":"d3","code":1}',
      '{"jobid":"j4"}',
      '{"jobid":"j1","status":"started","prompt":"p1","code":200}',
      '{"prompt":"p5","status":1,"jobid":"j5"}',
    }
    local want = {
      { jobid = "j1", status = "started", prompt = "p1", code = 200 },
      { jobid = "j2", prompt = "p2", verb = "v2", code = 201 },
      { jobid = "j3", status = "failed", error = "e3", errorDetails = "d3", code = 1 },
      { jobid = "j4" },
      { jobid = "j1", status = "started", prompt = "p1", code = 200 },
    }
    for round = 1, 3 do
      for i, text in ipairs(answers) do
        local job, err = faceswap.decode(text)
        if want[i] then
          assert.is_nil(err, "round " .. round .. " answer " .. i)
          for _, name in ipairs { "jobid", "verb", "status", "prompt", "error", "errorDetails",
                                  "code", "other", "extra" } do
            assert.are.equal(want[i][name], job[name], name .. " of answer " .. i)
          end
        else
          assert.is_nil(job)
          assert.are.equal("field status is not a string", err.error)
        end
      end
    end
  end)
end)

describe("what a job keeps #unit", function()
  local cjson = require "cjson.safe"

  -- Every value reachable from a job through its user values (5.2+) or environment (5.1).
  local function reachable(job)
    local seen, strings, queue = {}, {}, {}
    local function add(v)
      if type(v) == "string" then strings[#strings + 1] = v
      elseif type(v) == "table" and not seen[v] then seen[v] = true; queue[#queue + 1] = v end
    end
    local getuservalue, getfenv = rawget(debug, "getuservalue"), rawget(debug, "getfenv")
    if not getuservalue then
      add(getfenv(job))
    else
      for n = 1, 10 do
        local v, ok = getuservalue(job, n)
        if n > 1 and ok == false then break end
        add(v)
        if _VERSION < "Lua 5.4" then break end
      end
    end
    while #queue > 0 do
      local t = table.remove(queue)
      for k, v in pairs(t) do add(k); add(v) end
    end
    return strings
  end

  it("drops the members it does not document, and keeps every documented one", function()
    local job = assert(faceswap.decode(COMPLETED))
    local found = {}
    for _, s in ipairs(reachable(job)) do found[s] = true end
    assert.is_nil(found.future_field)
    assert.is_nil(found.kept)
    assert.is_nil(found.proxy_url) -- inside attachments: read from the text when asked for
    assert.is_true(found[COMPLETED]) -- job:json(), exactly as received
    -- the documented fields are all still there, as before
    assert.equal("ABC…secured…xyz", job.discord)
    assert.equal(200, job.code)
    assert.equal("https://media.example/a_1.png", job.attachments[1].proxy_url)
    assert.same({ { type = "rich", description = "done",
                    image = { url = "https://cdn.example/e.png", width = 1 } } }, job.embeds)
    assert.same({ 4, 796, 800 }, { job.credits, job.credits_left, job.credits_total })
  end)

  it("finds attachments and embeds where lua-cjson does: last duplicate wins, names escaped", function()
    local texts = {
      '{"jobid":"a","attachments":[{"url":"x"}],"attachments":null}',
      '{"jobid":"a","attachments":null,"attachments":[{"url":"y"}]}',
      '{"jobid":"a","att\\u0061chments":[{"url":"z"}],"embeds":[{"a":[1,{"b":"]}"}]}]}',
      ' { "x" : "]}\\"[{\\\\" , "n" : -1.5e3 , "t" : true , "f" : false , "z" : null ,' ..
        ' "attachments" : [ { "url" : "q\\"]" } , { } ] , "jobid" : "a" } ',
      '{"jobid":"a","embeds":[],"attachments":[{"url":"w","n":null,"l":[null,2]}],' ..
        '"attachmentsX":[{"url":"no"}],"embeds":[{"e":{}}],"deep":[[[[{"attachments":1}]]]]}',
      '{"jobid":"a"}',
      '{"jobid":"a","attachments":[],"embeds":[{"x":1}],"embeds":[]}',
      '{"jobid":"a","attachments":[{"url":"v"}],"embeds":[]}',
    }
    -- lua-cjson's reading, in the module's convention: a null member is left out
    local function clean(v)
      if type(v) ~= "table" then return v end
      for k, e in pairs(v) do
        if type(k) == "string" and e == cjson.null then v[k] = nil else v[k] = clean(e) end
      end
      return v
    end
    for _, text in ipairs(texts) do
      local job = assert(faceswap.decode(text))
      local want = clean(assert(cjson.decode(text)))
      assert.same(want.attachments, job.attachments, text)
      assert.same(want.embeds, job.embeds, text)
    end
  end)

  -- Texts of about `bytes` bytes, each a different string (so each job's text is its own), in
  -- the shapes that cost the most once decoded.
  local SHAPES = {
    unknown_keys = function(i, bytes) -- many members the job does not document
      local parts, n = {}, 0
      while n < bytes - 40 do parts[#parts + 1] = '"k' .. #parts .. '":{}'; n = n + #parts[#parts] + 1 end
      return '{"jobid":"j' .. i .. '",' .. table.concat(parts, ",") .. '}'
    end,
    deep_arrays = function(i, bytes) -- an unknown member of nested arrays
      local unit = ("["):rep(60) .. ("]"):rep(60) .. ","
      return '{"jobid":"j' .. i .. '","future":[' .. unit:rep(math.floor((bytes - 40) / #unit)) .. '0]}'
    end,
    attachments = function(i, bytes) -- a long list of (empty) attachments: a table per 3 bytes
      return '{"jobid":"j' .. i .. '","attachments":[' .. ("{},"):rep(math.floor((bytes - 40) / 3)) .. '{}]}'
    end,
    embeds = function(i, bytes) -- embeds of objects holding numbers
      return '{"jobid":"j' .. i .. '","embeds":[' .. ('{"a":[0,0,0,0]},'):rep(math.floor((bytes - 40) / 16)) .. '{}]}'
    end,
    content = function(i, bytes) -- one long documented string: the text and the string stay
      return '{"jobid":"j' .. i .. '","content":"' .. ("x"):rep(bytes - 30) .. '"}'
    end,
  }

  it("retains at most 2 x the answer's bytes plus 4 KiB per job, whatever its shape #novalgrind", function()
    local BYTES, N = 65536, 8
    for name, make in pairs(SHAPES) do
      local jobs = {}
      collectgarbage(); collectgarbage()
      local before = collectgarbage("count")
      local size
      for i = 1, N do
        local text = make(i, BYTES)
        size = #text
        jobs[i] = assert(faceswap.decode(text))
      end
      collectgarbage(); collectgarbage()
      local per_job = (collectgarbage("count") - before) * 1024 / N
      assert.is_true(per_job <= 2 * size + 4096,
        string.format("%s: %.0f bytes kept per job of %d bytes", name, per_job, size))
      -- and the documented fields are all there
      assert.equal("j" .. N, jobs[N].jobid)
      assert.equal(size, #jobs[N]:json())
      if name == "attachments" then assert.equal(math.floor((BYTES - 40) / 3) + 1, #jobs[N].attachments) end
      if name == "embeds" then assert.same({ 0, 0, 0, 0 }, jobs[N].embeds[1].a) end
      if name == "content" then assert.equal(BYTES - 30, #jobs[N].content) end
    end
  end)
end)

describe("core.job_runs #unit", function()
  local core = require "faceswap.core"
  local function job(fields)
    local parts = {}
    for k, v in pairs(fields) do parts[#parts + 1] = ('"%s":%s'):format(k, v) end
    return assert(faceswap.decode("{" .. table.concat(parts, ",") .. "}"))
  end

  it("gives the jobid of a job whose status is set and not a terminal one", function()
    assert.equal("j-1", core.job_runs(job { jobid = '"j-1"', status = '"started"' }))
    assert.equal("j-2", core.job_runs(job { jobid = '"j-2"', status = '"created"' }))
    assert.equal("j-3", core.job_runs(job { jobid = '"j-3"', status = '"some future status"' }))
  end)

  it("is false for a job that ended or has no status", function()
    for _, status in ipairs { "completed", "failed", "moderated", "cancelled" } do
      assert.is_false(core.job_runs(job { jobid = '"j"', status = '"' .. status .. '"' }))
    end
    assert.is_false(core.job_runs(job { jobid = '"j"' }))
    assert.is_false(core.job_runs(job { jobid = '"j"', status = "null" }))
  end)

  it("is false, never raising, for anything that is not a job", function()
    local err = core.error { kind = "bad_response", error = "x" }
    for _, v in ipairs { 1, "j", {}, true, err, io.stdout, print } do
      assert.is_false(core.job_runs(v))
    end
    assert.is_false(core.job_runs(nil))
    assert.is_false(core.job_runs())
    assert.is_false(core.job_runs(setmetatable({ jobid = "j", status = "started" }, {})))
  end)
end)
