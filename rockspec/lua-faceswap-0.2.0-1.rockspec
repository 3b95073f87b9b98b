-- The version in this file's name is the one version of lua-faceswap: the Makefile reads it
-- from there into faceswap._VERSION, and a spec checks that the two agree.
rockspec_format = "3.0"
package = "lua-faceswap"
version = "0.2.0-1"
source = {
   -- a placeholder that the release step replaces with the project's git URL; `make rock`
   -- packs the checkout itself into build/rock/lua-faceswap-VERSION-REVISION.src.rock, which
   -- `luarocks install` takes anywhere, no network needed
   url = "git+https://example.invalid/lua-faceswap.git",
}
description = {
   summary = "Client for useapi.net's InsightFaceSwap API: a C core over libcurl with a thin Lua layer",
   detailed = [[
A Lua client for the InsightFaceSwap API of useapi.net: headshots and the other commands,
waiting for jobs, retries that never post twice, many jobs at once from one thread, a callback
receiver, the `faceswap` command line, OpenResty support, and `faceswap-sim`, a local simulator
of the API to test against. Lua 5.1, 5.2, 5.3, 5.4 and LuaJIT 2.1.]],
   license = "MIT",
   labels = { "http", "api", "openresty" },
}
dependencies = {
   "lua >= 5.1, < 5.5",
   -- the one JSON codec; the core loads a private instance of it. Debian's lua-cjson package is
   -- no rock: with it, install with --deps-mode=none (README.md, Install)
   "lua-cjson >= 2.1.0",
}
external_dependencies = {
   CURL = { header = "curl/curl.h", library = "curl" },
}
build = {
   type = "make",
   build_variables = {
      BUILD = "build/luarocks",
      LUA_INCDIR = "$(LUA_INCDIR)",
      CFLAGS = "$(CFLAGS)",
      LIBFLAG = "$(LIBFLAG)",
      CURL_CFLAGS = "-I$(CURL_INCDIR)",
      CURL_LIBS = "-L$(CURL_LIBDIR) -lcurl",
   },
   install_variables = {
      BUILD = "build/luarocks",
      LUA = "$(LUA)",
      INST_LIBDIR = "$(LIBDIR)",
      INST_LUADIR = "$(LUADIR)",
      INST_BINDIR = "$(BINDIR)",
      -- the man page, the bash completion and the editor's types go under the rock's own
      -- directory (`luarocks show --rock-dir lua-faceswap`): share/man/man1/faceswap.1,
      -- share/bash-completion/completions/faceswap, share/lua-faceswap/library/faceswap.lua
      INST_DATADIR = "$(PREFIX)/share",
      -- the scripts are luarocks' to install (below), wrapped with its tree's paths
      INSTALL_BY_LUAROCKS = "yes",
   },
   install = {
      bin = { faceswap = "bin/faceswap", ["faceswap-sim"] = "bin/faceswap-sim" },
   },
}
