-- docs/getting-started.md works as written: its first.lua and its shell session run against the
-- simulator (started by the session itself, on a free port instead of 8088), with the checkout
-- standing in for `make install`; its install commands are make targets that exist.
local shell = require "spec.support.shell"
local nginx = require "spec.support.nginx" -- for free_port and the checkout's root

local GUIDE = "docs/getting-started.md"

local function code_block(heading, language) return shell.code_block(GUIDE, heading, language) end

describe("docs/getting-started.md #external", function()
  it("installs with make targets that exist", function()
    local block = code_block("## 1. Install", "sh")
    local commands = 0
    for line in block:gmatch("[^\n]+") do
      local args = assert(line:match("^make%s*([^#]-)%s*#"), "not a make line: " .. line)
      commands = commands + 1
      local out = shell.capture("make -n " .. args .. " >/dev/null 2>&1; echo $?")
      assert.equal("0\n", out, "make -n " .. args)
    end
    assert.equal(2, commands)
  end)

  it("runs first.lua and the command line on the simulator, saving the pictures", function()
    local root = nginx.root
    local dir = shell.capture("mktemp -d"):gsub("\n$", "")
    finally(function() os.execute("rm -rf " .. shell.quote(dir)) end)
    local f = assert(io.open(dir .. "/first.lua", "w"))
    f:write(code_block("## 2. Your first headshot", "lua"))
    f:close()
    local port = tostring(nginx.free_port())
    local session, n = code_block("## 3. Try it on the simulator", "sh"):gsub("8088", port)
    assert.equal(2, n)
    local out = shell.capture("cd " .. shell.quote(dir) .. " && env -u USEAPI_TOKEN -u USEAPI_BASE_URL" ..
      " -u FACESWAP_LOG PATH=" .. shell.quote(root .. "/bin") .. ":$PATH" ..
      " LUA_PATH=" .. shell.quote(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;") ..
      " LUA_CPATH=" .. shell.quote(root .. "/build/5.4/?.so;;") ..
      " sh -e -c " .. shell.quote(session) .. " 2>&1; echo \"exit $?\"")
    -- the command's line per change of the job's status (stderr; not a terminal here)
    local status_lines
    out, status_lines = out:gsub("faceswap: job %x+: [%a ]+\n", "")
    assert.is_true(status_lines >= 1, out)
    local first, second = out:match("^listening http://127%.0%.0%.1:" .. port .. "\n" ..
      "started (%x+)\nsaved %1%-1%.png\nsaved %1%-2%.png\n(%x+) completed photos/%2%-1%.png " ..
      "photos/%2%-2%.png\nexit 0\n$")
    assert.is_string(first, out)
    for _, path in ipairs { first .. "-1.png", first .. "-2.png", "photos/" .. second .. "-1.png",
                            "photos/" .. second .. "-2.png" } do
      assert.equal("\137PNG\r\n\26\n", (shell.read(dir .. "/" .. path) or ""):sub(1, 8), path)
    end
  end)
end)
