-- spec/support/debs.sh, which `make demo` and `make test` run first: each missing package named
-- once, apt's chatter kept out of the output, the exact apt-get line printed. dpkg-query,
-- apt-get and id are stand-ins on PATH that record how they were called.
local shell = require "spec.support.shell"

describe("debs.sh #unit #external", function()
  local dir

  -- Writes an executable stand-in for `name`.
  local function stub(name, body)
    local f = assert(io.open(dir .. "/bin/" .. name, "w"))
    f:write("#!/bin/sh\n", body, "\n")
    f:close()
    os.execute("chmod +x " .. shell.quote(dir .. "/bin/" .. name))
  end

  -- Runs debs.sh as user `uid` with `args`; apt-get exits with `apt_status`. Returns the exit
  -- status, stdout, stderr and apt-get's recorded calls.
  local function run(uid, args, apt_status)
    stub("id", "echo " .. uid)
    stub("apt-get", 'echo "$DEBIAN_FRONTEND apt-get $*" >>"' .. dir .. '/calls"\n' ..
      'echo "Selecting previously unselected package x."\n' ..
      'echo "debconf: delaying package configuration, since apt-utils is not installed" >&2\n' ..
      "exit " .. (apt_status or 0))
    local status = shell.capture("PATH=" .. shell.quote(dir .. "/bin") .. ":$PATH sh spec/support/debs.sh " ..
      args .. " >" .. dir .. "/out 2>" .. dir .. "/err; echo $?")
    local calls = shell.read(dir .. "/calls") or ""
    os.remove(dir .. "/calls")
    return tonumber(status), shell.read(dir .. "/out"), shell.read(dir .. "/err"), calls
  end

  before_each(function()
    dir = shell.capture("mktemp -d"):gsub("\n$", "")
    os.execute("mkdir " .. dir .. "/bin")
    -- installed: the packages whose name starts with "ok"
    stub("dpkg-query", 'case "$3" in ok*) echo "install ok installed" ;; *) exit 1 ;; esac')
  end)
  after_each(function() os.execute("rm -rf " .. shell.quote(dir)) end)

  it("does nothing when every package is there", function()
    assert.same({ 0, "", "", "" }, { run(0, "ok-a ok-b ok-a") })
  end)

  it("as root installs each missing package once, quietly, saying the command", function()
    local status, out, err, calls = run(0, "ok-a gcc lua5.4 ok-b gcc lua5.4 luajit2")
    assert.same({ 0, "installing Debian packages: gcc lua5.4 luajit2\n" ..
      "  apt-get update && apt-get install -y --no-install-recommends gcc lua5.4 luajit2\n", "" },
      { status, out, err })
    assert.equal("noninteractive apt-get -qq update\n" ..
      "noninteractive apt-get -qq -o Dpkg::Use-Pty=0 install -y --no-install-recommends gcc " ..
      "lua5.4 luajit2\n", calls)
  end)

  it("as root shows apt's output when apt fails, and fails", function()
    local status, out, err = run(0, "gcc", 100)
    assert.same({ 1, "installing Debian packages: gcc\n" ..
      "  apt-get update && apt-get install -y --no-install-recommends gcc\n",
      "apt-get failed:\nSelecting previously unselected package x.\n" ..
      "debconf: delaying package configuration, since apt-utils is not installed\n" },
      { status, out, err })
  end)

  it("as another user prints the command to run, each package once, and fails", function()
    assert.same({ 1, "", "missing Debian packages; run:\n" ..
      "  sudo apt-get update && sudo apt-get install -y gcc lua5.4\n", "" },
      { run(1000, "gcc ok-a lua5.4 gcc") })
  end)
end)
