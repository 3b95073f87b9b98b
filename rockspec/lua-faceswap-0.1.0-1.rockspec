-- The version in this file's name is the one version of lua-faceswap: the Makefile reads it
-- from there into faceswap._VERSION, and a spec checks that the two agree.
rockspec_format = "3.0"
package = "lua-faceswap"
version = "0.1.0-1"
source = {
   url = "git+file:///dev/null",
}
description = {
   summary = "Client for useapi.net's InsightFaceSwap API: a C core over libcurl with a thin Lua layer",
   license = "MIT",
}
dependencies = {
   "lua >= 5.1",
   "lua-cjson >= 2.1.0", -- the one JSON codec; the core loads a private instance of it
}
external_dependencies = {
   CURL = { header = "curl/curl.h", library = "curl" },
}
build = {
   type = "make",
   build_variables = {
      LUA_VERSION = "$(LUA_VERSION)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      CFLAGS = "$(CFLAGS)",
      LIBFLAG = "$(LIBFLAG)",
      CURL_CFLAGS = "-I$(CURL_INCDIR)",
      CURL_LIBS = "-L$(CURL_LIBDIR) -lcurl",
   },
   install_variables = {
      LUA_VERSION = "$(LUA_VERSION)",
      INST_LIBDIR = "$(LIBDIR)",
      INST_LUADIR = "$(LUADIR)",
      INST_BINDIR = "$(BINDIR)",
   },
   install = {
      bin = { faceswap = "bin/faceswap" },
   },
}
