# lua-faceswap: build, test, demo, bench, install, clean.
# `make demo` and `make test` are the two commands of the README; both install missing Debian
# packages first when run as root, and print the exact apt-get command otherwise.
#
# One source for every Lua: LUA_VERSION=5.4 (the default), 5.3, 5.2, 5.1 or luajit (LuaJIT 2.1,
# the 5.1 API, as OpenResty's luajit2 packages it; never Debian's plain luajit, which would take
# the nginx lua module with it). Each builds into build/$(LUA_VERSION).

LUA_VERSION ?= 5.4
PKG_CONFIG  ?= pkg-config
# Every Lua the README promises: `make test` runs the suite on each.
ALL_LUAS    := 5.1 5.2 5.3 5.4 luajit
# The Debian packages of a Lua: its interpreter and headers (5.1's are liblua5.1-0-dev, whose
# liblua5.1-dev is only a name it provides, which dpkg-query never finds installed).
debs_for     = $(if $(filter luajit,$(1)),luajit2 libluajit2-5.1-dev,lua$(1) \
               $(if $(filter 5.1,$(1)),liblua5.1-0-dev,liblua$(1)-dev))
ifeq ($(LUA_VERSION),luajit)
LUA         ?= luajit
LUA_API     := 5.1
LUA_INCDIR  ?= $(or $(shell $(PKG_CONFIG) --variable=includedir luajit 2>/dev/null),/usr/include/luajit-2.1)
else
LUA         ?= lua$(LUA_VERSION)
LUA_API     := $(LUA_VERSION)
LUA_INCDIR  ?= $(or $(shell $(PKG_CONFIG) --variable=includedir lua$(LUA_VERSION) 2>/dev/null),/usr/include)/lua$(LUA_VERSION)
endif
# `make test` runs the whole suite on LUA_VERSION, and its specs that depend on the Lua on each
# of these: so CI, which runs `make test`, covers every Lua. TEST_ALSO= runs LUA_VERSION's alone.
TEST_ALSO   ?= $(filter-out $(LUA_VERSION),$(ALL_LUAS))
CC          ?= cc
CFLAGS      ?= -O2 -g
WARN        ?= -Wall -Wextra -Werror
# The version lives in one place: the rockspec's file name.
ROCKSPEC    := $(firstword $(wildcard rockspec/lua-faceswap-*.rockspec))
VERSION     := $(patsubst rockspec/lua-faceswap-%.rockspec,%,$(ROCKSPEC))
VERSION     := $(firstword $(subst -, ,$(VERSION)))

CURL_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS   ?= $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)
LIBFLAG     ?= -shared

BUILD       ?= build/$(LUA_VERSION)
MODULE      := $(BUILD)/faceswap/core.so
SOURCES     := $(filter-out csrc/preload.c csrc/redis.c,$(wildcard csrc/*.c))
OBJECTS     := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SOURCES))
ALL_CFLAGS  := $(CFLAGS) $(WARN) -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden \
               -I$(LUA_INCDIR) $(CURL_CFLAGS) -DFACESWAP_VERSION='"$(VERSION)"' -MMD -MP

# faceswap.redis (csrc/redis.c), the Redis coordinator's connection: an optional module of its
# own, built when hiredis (Debian libhiredis-dev) is installed, so that only those who
# coordinate several processes need it. HIREDIS=no leaves it out.
HIREDIS     ?= $(if $(shell $(PKG_CONFIG) --exists hiredis 2>/dev/null && echo yes),yes,no)
HIREDIS_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags hiredis 2>/dev/null)
HIREDIS_LIBS ?= $(shell $(PKG_CONFIG) --libs hiredis 2>/dev/null || echo -lhiredis)
REDIS_MODULE := $(BUILD)/faceswap/redis.so
OPTIONAL    := $(if $(filter yes,$(HIREDIS)),$(REDIS_MODULE))

# Install locations (luarocks passes its own).
PREFIX      ?= /usr/local
INST_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_API)
INST_LUADIR ?= $(PREFIX)/share/lua/$(LUA_API)
INST_BINDIR ?= $(PREFIX)/bin
# the man page, the bash completion and the editor's types (tools/); the rock gives its own
INST_DATADIR ?= $(PREFIX)/share
GEN_DIR     := $(BUILD)/share
GENERATED   := $(GEN_DIR)/man/man1/faceswap.1 $(GEN_DIR)/bash-completion/completions/faceswap \
               $(GEN_DIR)/lua-faceswap/library/faceswap.lua

# The Debian packages each command needs, all of them here (lua-cjson and lua-socket serve
# every Lua, LuaJIT too). ca-certificates: libcurl's Debian package only recommends it, and
# without it (a minimal root, --no-install-recommends) no HTTPS call can verify anything.
BUILD_DEBS  := gcc make pkg-config $(call debs_for,$(LUA_VERSION)) libcurl4-openssl-dev lua-cjson \
               lua-socket ca-certificates
# `make doc`: LDoc, and the markdown it formats comments with (for Lua 5.1 only in Debian)
DOC_DEBS    := lua-ldoc lua-markdown lua5.1
# `make rock`: it packs the checkout's tracked files with git
ROCK_DEBS   := luarocks git
# `make test-hosts`: LÖVE 11.4 and Neovim 0.7 (LuaJIT), WeeChat's Lua plugin (5.3)
HOST_DEBS   := love neovim weechat-headless weechat-lua
# `make test`: every Lua it runs (ALL_LUAS, LUA_VERSION's own among them), busted, the linters,
# valgrind, nginx's lua module, tinyproxy and strace for the faults, lua-luv for
# spec/integration/eventloop_spec.lua; Redis, hiredis, lua-nginx-redis and lua-posix for a
# ledger that processes share; python3 (zlib's CRC-32, beside the simulator's), groff, man and
# col (the man page), then the hosts, the doc and the rock.
TEST_DEBS   := $(BUILD_DEBS) $(foreach v,$(ALL_LUAS),$(call debs_for,$(v))) lua-busted lua-check \
               valgrind cppcheck nginx libnginx-mod-http-lua openssl locales strace tinyproxy curl \
               lua-luv lua-posix redis-server libhiredis-dev lua-nginx-redis \
               python3 groff-base man-db bsdextrautils \
               $(HOST_DEBS) $(DOC_DEBS) $(ROCK_DEBS)
# `make bench` compares against the curl tool and Python requests too (spec/bench/https.sh),
# and against Lua-cURL (spec/bench/roundtrip.sh)
BENCH_DEBS  := $(TEST_DEBS) python3-requests lua-curl
# `make test-all-lua`: the Luas, and what their busted suites need
ALL_LUA_DEBS := $(foreach v,$(ALL_LUAS),$(call debs_for,$(v))) lua-cjson lua-socket lua-busted \
               libcurl4-openssl-dev locales

.PHONY: all test check demo bench install clean deps-build deps-test deps-bench lint lint-lua \
        lint-c FORCE test-asan asan-build test-valgrind fuzz fuzz-wire rock test-rock doc test-all-lua \
        test-fresh static examples test-hosts testrow

all: $(MODULE) $(OPTIONAL)

$(MODULE): $(OBJECTS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) -o $@ $(OBJECTS) $(CURL_LIBS) $(LDFLAGS)

$(BUILD)/obj/redis.o: csrc/redis.c csrc/compat.h Makefile $(REBUILD)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(HIREDIS_CFLAGS) -c -o $@ $<

$(REDIS_MODULE): $(BUILD)/obj/redis.o
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) -o $@ $< $(HIREDIS_LIBS) $(LDFLAGS)

# luarocks (the rockspec) builds into build/luarocks for every Lua it targets, giving LUA_INCDIR
# and LUA but no LUA_VERSION: its build step (the one given LUA_INCDIR) compiles afresh, lest
# objects made with one Lua's headers go into another's module; its install step takes what
# that built.
ifeq ($(BUILD)$(origin LUA_INCDIR),build/luarockscommand line)
REBUILD     := FORCE
endif
FORCE:

$(BUILD)/obj/%.o: csrc/%.c Makefile $(ROCKSPEC) $(REBUILD)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

-include $(OBJECTS:.o=.d) $(BUILD)/obj/preload.d

# For C hosts: the core and the Lua layer (compiled in as text) in one archive of one object,
# whose only global symbols are luaopen_faceswap_core and faceswap_preload (csrc/faceswap.h):
# the core's internal functions are made local, so they cannot clash with a host's.
STATIC      := $(BUILD)/libfaceswap.a
OBJCOPY     ?= objcopy
LUA_LAYER   := $(wildcard lua/faceswap/*.lua lua/faceswap/resty/*.lua lua/faceswap/coordinator/*.lua)
static: $(STATIC)

$(BUILD)/obj/lua_layer.c: $(LUA_LAYER) csrc/embed.lua
	@mkdir -p $(dir $@)
	$(LUA) csrc/embed.lua $(LUA_LAYER) >$@.tmp && mv $@.tmp $@

$(BUILD)/obj/lua_layer.o: $(BUILD)/obj/lua_layer.c csrc/preload.h
	$(CC) $(ALL_CFLAGS) -Icsrc -c -o $@ $<

$(STATIC): $(OBJECTS) $(BUILD)/obj/preload.o $(BUILD)/obj/lua_layer.o
	$(LD) -r -o $(BUILD)/obj/faceswap_static.o $^
	$(OBJCOPY) --localize-hidden $(BUILD)/obj/faceswap_static.o
	rm -f $@
	$(AR) rcs $@ $(BUILD)/obj/faceswap_static.o

# examples/host.c: a C program that embeds Lua and links the archive.
LUA_LIBS    ?= $(shell $(PKG_CONFIG) --libs $(if $(filter luajit,$(LUA_VERSION)),luajit,lua$(LUA_VERSION)) 2>/dev/null)
examples: $(BUILD)/host

$(BUILD)/host: examples/host.c csrc/faceswap.h $(STATIC)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -D_POSIX_C_SOURCE=200809L -Icsrc -I$(LUA_INCDIR) -o $@ \
	  examples/host.c $(STATIC) $(CURL_LIBS) $(LUA_LIBS) -lm $(LDFLAGS)

# fork() and friends for spec/integration/fork_spec.lua, which builds it (Debian's lua-posix
# lacks 5.4)
$(BUILD)/spec/forkhelp.so: spec/support/forkhelp.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -I$(LUA_INCDIR) $(LIBFLAG) -o $@ $< $(LDFLAGS)

deps-build:
	@sh spec/support/debs.sh $(BUILD_DEBS)

deps-test:
	@sh spec/support/debs.sh $(TEST_DEBS)

deps-bench:
	@sh spec/support/debs.sh $(BENCH_DEBS)

demo: deps-build
	@$(MAKE) --no-print-directory all
	@$(LUA) spec/support/demo.lua

# Everything, its independent passes side by side (spec/support/test.sh, docs/development.md);
# PASSES="valgrind asan" runs those alone (after the builds). Ends "N passed, M failed".
PASSES      ?=
test: deps-test
	@LUA=$(LUA) LUA_VERSION=$(LUA_VERSION) LUA_API=$(LUA_API) LUA_INCDIR=$(LUA_INCDIR) \
	  TEST_ALSO="$(TEST_ALSO)" bash spec/support/test.sh $(PASSES)

# Lint and the unit specs on LUA_VERSION, in well under a minute: the check to run before each
# commit. spec/unit (no simulator, no other program; every block there is tagged #unit), and
# the few #unit blocks of spec/docs and spec/packaging (the API reference, the version,
# debs.sh); --lazy: a describe block none of whose specs is selected does not run its setup
# (which may start a simulator or nginx). spec/integration is not even loaded.
check: all
	@$(MAKE) --no-print-directory -s lint
	$(LUA) /usr/bin/busted --cpath='./$(BUILD)/?.so' -o plainTerminal --tags=unit --lazy \
	  spec/unit spec/docs spec/packaging

# The busted suite on each of ALL_LUAS, each with its own build (build/V); ends with one line
# per Lua and fails if any failed.
test-all-lua:
	@sh spec/support/debs.sh $(ALL_LUA_DEBS)
	@for v in $(ALL_LUAS); do $(MAKE) --no-print-directory LUA_VERSION=$$v all || exit 1; done
	@mkdir -p build/test; fail=0; for v in $(ALL_LUAS); do \
	  if [ $$v = luajit ]; then lua=luajit; else lua=lua$$v; fi; \
	  $$lua /usr/bin/busted --cpath="./build/$$v/?.so" -o plainTerminal >build/test/busted-$$v.log 2>&1; \
	  rc=$$?; echo "$$v: $$(grep -a 'successes' build/test/busted-$$v.log | tail -n 1) (log: build/test/busted-$$v.log)"; \
	  [ $$rc -eq 0 ] || fail=1; \
	done; exit $$fail

# The suite with the module and a small Lua 5.4 host built with ASan and UBSan (linked in, so
# the simulator and nginx the specs start run unsanitized), the collector stepping all the
# time (FACESWAP_GC_STEP), leaks checked at exit. Like test-valgrind it leaves out the specs
# that exercise no C of this process (#external, #lua_only) and those asserting how soon
# something happens (#timing), and it tells the rest (SPEC_NO_TIME_BOUNDS) to assert no upper
# bound on time: a sanitized run is slow, and a spec asserts behaviour.
SAN_FLAGS   := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SLOW_SKIP   := external,lua_only,timing
test-asan: deps-test asan-build
	ASAN_OPTIONS=detect_leaks=1 FACESWAP_GC_STEP=10 SPEC_NO_TIME_BOUNDS=1 build/asan/asan_lua \
	  /usr/bin/busted --cpath='./build/asan/?.so' -o plainTerminal --exclude-tags=$(SLOW_SKIP)

asan-build: build/asan/asan_lua
	@$(MAKE) --no-print-directory LUA_VERSION=5.4 BUILD=build/asan CFLAGS="$(SAN_FLAGS)" \
	  LDFLAGS="$(SAN_FLAGS)" all
	@# the command line's specs run bin/faceswap, which loads the plain build/5.4
	@$(MAKE) --no-print-directory LUA_VERSION=5.4 all

# A core with csrc/command.c's test-only row (`ping`, -DFACESWAP_TEST_COMMAND) in build/testrow,
# for Lua 5.4: spec/integration/add_command_spec.lua shows that the row alone makes a command
# (docs/development.md, "Adding a command"). Never installed.
testrow:
	@$(MAKE) --no-print-directory LUA_VERSION=5.4 BUILD=build/testrow \
	  CFLAGS="$(CFLAGS) -DFACESWAP_TEST_COMMAND" all

build/asan/asan_lua: spec/support/asan_lua.c
	@mkdir -p $(dir $@)
	$(CC) $(SAN_FLAGS) $(shell $(PKG_CONFIG) --cflags lua5.4) -o $@ $< \
	  $(shell $(PKG_CONFIG) --libs lua5.4)

# The suite under valgrind, in the same process as the module: no errors, nothing definitely
# lost. The specs that measure memory (#novalgrind) are left out too, and the selection and
# SPEC_NO_TIME_BOUNDS are test-asan's.
test-valgrind: all
	SPEC_NO_TIME_BOUNDS=1 valgrind --quiet --error-exitcode=99 --leak-check=full \
	  --errors-for-leak-kinds=definite --show-leak-kinds=definite --trace-children=no $(LUA) \
	  /usr/bin/busted --cpath='./$(BUILD)/?.so' -o plainTerminal \
	  --exclude-tags=novalgrind,$(SLOW_SKIP)

# The library inside real hosts (spec/hosts): LÖVE 11.4 and Neovim 0.7 load the LuaJIT build,
# WeeChat's Lua plugin the 5.3 one; the simulator and busted run on 5.4.
test-hosts:
	@$(MAKE) --no-print-directory LUA_VERSION=luajit all
	@$(MAKE) --no-print-directory LUA_VERSION=5.3 all
	lua5.4 /usr/bin/busted --pattern=_test -o plainTerminal spec/hosts

# libFuzzer, ASan and UBSan: each harness of spec/fuzz for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
fuzz:
	@sh spec/support/debs.sh clang
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash spec/fuzz/run.sh

# Both transports on the wire against a hostile server (spec/fuzz/answers.py): the libcurl one
# under ASan and UBSan, the nginx one inside nginx (spec/fuzz/wire.sh; WIRE_SEEDS and more).
fuzz-wire: deps-test asan-build
	@$(MAKE) --no-print-directory LUA_VERSION=luajit all
	bash spec/fuzz/wire.sh

# The README's two commands in a fresh debootstrap'd Debian 12 with only make added (root;
# the root's tarball is cached in /var/cache/lua-faceswap). Before every release.
test-fresh:
	bash spec/support/fresh.sh

lint: lint-lua lint-c

# the generator of the static archive's Lua layer (csrc/embed.lua) is Lua too
lint-lua:
	luacheck --quiet --codes lua spec bin/faceswap bin/faceswap-sim csrc/embed.lua

# each side of compat.h: 5.4, 5.3, 5.2 and 5.1 (PUC and LuaJIT)
lint-c:
	for v in 504 503 502 501; do \
	  cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --suppress=missingIncludeSystem -I csrc -DFACESWAP_VERSION='"$(VERSION)"' \
	    -DLUA_VERSION_NUM=$$v csrc || exit 1; \
	done

bench: deps-bench
	@$(MAKE) --no-print-directory all
	bash spec/bench/run.sh
	bash spec/bench/frames.sh

# Where the modules go must be a plain absolute path: the installed scripts name it in a Lua
# string, and LUA_PATH would split it at ";" and fill in its "?".
# The scripts: bin/faceswap and bin/faceswap-sim with their line `local installed = nil`
# naming INST_LUADIR and INST_LIBDIR, so that they find their modules wherever they land.
# faceswap-$(LUA_VERSION) always; faceswap and faceswap-sim only where absent or installed for
# this same LUA_VERSION (by an older install: with the same #! line), so that installing for a
# second Lua never changes the first's. Then, where $(LUA) would not find the modules by
# itself, the LUA_PATH and LUA_CPATH lines for the user's own scripts (LUA_PATH_5_4... for 5.2
# to 5.4, which read those first: a 5.1 or LuaJIT install beside it cannot shadow its core).
# The rockspec sets INSTALL_BY_LUAROCKS=yes: luarocks installs the scripts, wrapped with its
# tree's paths, and `luarocks path` gives the lines.
INSTALL_BY_LUAROCKS ?=
INSTALL_MARK := -- make install LUA_VERSION=$(LUA_VERSION)
INSTALL_ENV  := $(if $(filter 5.1,$(LUA_API)),,_$(subst .,_,$(LUA_API)))
# Exits 0 when the Lua finds INST_LUADIR's and INST_LIBDIR's modules by itself.
INSTALL_ON_PATH := os.exit(((";" .. package.path .. ";"):find(";$(INST_LUADIR)/?.lua;", 1, true) and \
  (";" .. package.cpath .. ";"):find(";$(INST_LIBDIR)/?.so;", 1, true)) and 0 or 1)
install: all $(GENERATED)
ifneq ($(INSTALL_BY_LUAROCKS),yes)
	@for dir in '$(INST_LUADIR)' '$(INST_LIBDIR)'; do case "$$dir" in \
	  /*[!A-Za-z0-9/._+@,=~-]*|[!/]*|'') echo "make install: '$$dir' is no plain absolute path" \
	    "(letters, digits and / . _ - + @ , = ~): the installed scripts and LUA_PATH name it" >&2; exit 1;; \
	  esac; done
endif
	install -d $(DESTDIR)$(INST_LIBDIR)/faceswap $(DESTDIR)$(INST_LUADIR)/faceswap/simulator
	install -m 755 $(MODULE) $(DESTDIR)$(INST_LIBDIR)/faceswap/core.so
	$(if $(OPTIONAL),install -m 755 $(REDIS_MODULE) $(DESTDIR)$(INST_LIBDIR)/faceswap/redis.so)
	install -m 644 lua/faceswap/*.lua $(DESTDIR)$(INST_LUADIR)/faceswap/
	install -d $(DESTDIR)$(INST_LUADIR)/faceswap/resty && install -m 644 lua/faceswap/resty/*.lua $(DESTDIR)$(INST_LUADIR)/faceswap/resty/
	install -m 644 lua/faceswap/simulator/*.lua $(DESTDIR)$(INST_LUADIR)/faceswap/simulator/
	install -d $(DESTDIR)$(INST_LUADIR)/faceswap/coordinator && install -m 644 lua/faceswap/coordinator/*.lua $(DESTDIR)$(INST_LUADIR)/faceswap/coordinator/
	install -d $(DESTDIR)$(INST_DATADIR)/man/man1 $(DESTDIR)$(INST_DATADIR)/bash-completion/completions \
	  $(DESTDIR)$(INST_DATADIR)/lua-faceswap/library
	install -m 644 $(GEN_DIR)/man/man1/faceswap.1 $(DESTDIR)$(INST_DATADIR)/man/man1/faceswap.1
	install -m 644 $(GEN_DIR)/bash-completion/completions/faceswap \
	  $(DESTDIR)$(INST_DATADIR)/bash-completion/completions/faceswap
	install -m 644 $(GEN_DIR)/lua-faceswap/library/faceswap.lua \
	  $(DESTDIR)$(INST_DATADIR)/lua-faceswap/library/faceswap.lua
ifneq ($(INSTALL_BY_LUAROCKS),yes)
	install -d $(DESTDIR)$(INST_BINDIR)
	@set -e; bin='$(DESTDIR)$(INST_BINDIR)'; mark='$(INSTALL_MARK)'; \
	for script in faceswap faceswap-sim; do \
	  if [ $$script = faceswap ]; then shebang='#!/usr/bin/env $(LUA)'; else shebang=$$(head -n 1 bin/$$script); fi; \
	  sed -e "1s|.*|$$shebang|" -e 's|^local installed = nil .*|local installed = { lua = "$(INST_LUADIR)", lib = "$(INST_LIBDIR)" } '"$$mark|" \
	    bin/$$script >"$$bin/.$$script.tmp"; \
	  grep -qF -- "$$mark" "$$bin/.$$script.tmp"; \
	  chmod 755 "$$bin/.$$script.tmp"; \
	  if [ $$script = faceswap ]; then cp -p "$$bin/.$$script.tmp" "$$bin/$$script-$(LUA_VERSION)"; \
	    echo "installed $$bin/$$script-$(LUA_VERSION)"; fi; \
	  if [ ! -e "$$bin/$$script" ] || grep -qF -- "$$mark" "$$bin/$$script" || \
	     { ! grep -q -- '-- make install LUA_VERSION=' "$$bin/$$script" && \
	       [ "$$(head -n 1 "$$bin/$$script")" = '#!/usr/bin/env $(LUA)' ]; }; then \
	    mv -f "$$bin/.$$script.tmp" "$$bin/$$script"; echo "installed $$bin/$$script"; \
	  else \
	    rm -f "$$bin/.$$script.tmp"; \
	    owner=$$(sed -n 's/.*-- make install LUA_VERSION=//p' "$$bin/$$script"); \
	    if [ $$script = faceswap ]; then why="this Lua's is $$bin/faceswap-$(LUA_VERSION)"; \
	    else why="it serves every Lua alike"; fi; \
	    echo "kept $$bin/$$script, $${owner:+installed by make install LUA_VERSION=}$${owner:-$$(head -n 1 "$$bin/$$script")}: $$why"; \
	  fi; \
	done
	@if ! env -u LUA_PATH -u LUA_CPATH -u LUA_PATH$(INSTALL_ENV) -u LUA_CPATH$(INSTALL_ENV) \
	     -u LUA_INIT -u LUA_INIT$(INSTALL_ENV) $(LUA) -e '$(INSTALL_ON_PATH)' 2>/dev/null; then \
	  echo "$(LUA) does not look in $(INST_LUADIR) and $(INST_LIBDIR) by itself: faceswap finds them," \
	    "and for your own scripts:"; \
	  echo 'export LUA_PATH$(INSTALL_ENV)="$(INST_LUADIR)/?.lua;$(INST_LUADIR)/?/init.lua;$${LUA_PATH$(INSTALL_ENV):-;}"'; \
	  echo 'export LUA_CPATH$(INSTALL_ENV)="$(INST_LIBDIR)/?.so;$${LUA_CPATH$(INSTALL_ENV):-;}"'; \
	fi
endif

# A source rock of this checkout (tracked files as they are now, uncommitted changes too):
# build/rock/lua-faceswap-VERSION-REVISION.src.rock. Its rockspec is the project's with
# source.url naming the archive packed inside, so `luarocks install` builds it anywhere.
ROCK_NAME   := $(patsubst rockspec/%.rockspec,%,$(ROCKSPEC))
rock:
	@sh spec/support/debs.sh $(ROCK_DEBS)
	@git rev-parse --is-inside-work-tree >/dev/null 2>&1 || \
	  { echo "make rock: packs a git checkout, and this is none"; exit 1; }
	rm -rf build/rock
	mkdir -p build/rock
	tree=$$(git stash create); git archive --format=tar.gz --prefix=lua-faceswap-$(VERSION)/ \
	  -o build/rock/lua-faceswap-$(VERSION).tar.gz $${tree:-HEAD}
	sed 's|^   url = .*|   url = "file://$(CURDIR)/build/rock/lua-faceswap-$(VERSION).tar.gz",\n   dir = "lua-faceswap-$(VERSION)",|' \
	  $(ROCKSPEC) >build/rock/$(ROCK_NAME).rockspec
	cd build/rock && luarocks pack $(ROCK_NAME).rockspec
	@echo "built build/rock/$(ROCK_NAME).src.rock"

# That rock installed with luarocks into a scratch tree and run there (also a step of make test).
test-rock:
	LUA=$(LUA) LUA_VERSION=$(LUA_VERSION) LUA_API=$(LUA_API) LUA_INCDIR=$(LUA_INCDIR) \
	  bash spec/support/rock.sh

# The API reference from the sources' doc comments (docs/config.ld): build/doc/index.html.
# LDoc runs on Lua 5.1, where Debian's lua-markdown is; any line it prints beyond its usual
# three, and the two that say it merged docs/commands.luadoc (the command methods, written by
# `make docs-tables`) into the module faceswap, is a warning, and fails the build.
LDOC        ?= lua5.1 /usr/bin/ldoc
doc:
	@sh spec/support/debs.sh $(DOC_DEBS)
	@rm -rf build/doc && mkdir -p build
	@$(LDOC) --fatalwarnings -c docs/config.ld -d $(CURDIR)/build/doc . >build/ldoc.log 2>&1; \
	  status=$$?; grep -v -e '^reading configuration from ' -e '^changing to directory' \
	    -e '^output written to ' -e '^found master module	.*/lua/faceswap/init\.lua$$' \
	    -e '^\*\*\*closing section from master module\*\*\*$$' build/ldoc.log; warned=$$?; \
	  if [ $$status -ne 0 ] || [ $$warned -eq 0 ]; then echo "make doc: LDoc warned (above)"; exit 1; fi
	@echo "built build/doc/index.html"

# Generated from the core's command table, the CLI's help and the doc comments by tools/
# (tools/gen.lua), with the Lua the core was built for, into $(BUILD)/share: the man page
# faceswap(1), the bash completion, and the LuaLS ---@meta file (docs/editor.md): GENERATED,
# which `make install` installs into INST_DATADIR.
# `make docs-tables` rewrites docs/commands.md's table of the commands in place.
.PHONY: generated man completion types docs-tables lint-tools
# The generators load the core: with $(LUA), else the first Lua here that can (luarocks may
# name another Lua of the same API than the one whose headers built it: lua5.1 for LuaJIT).
GEN         = found=; for lua in '$(LUA)' luajit lua5.4 lua5.3 lua5.2 lua5.1; do \
                if $$lua -e 'package.cpath = "./$(BUILD)/?.so;" .. package.cpath; require "faceswap.core"' \
                  >/dev/null 2>&1; then found=$$lua; break; fi; done; \
              [ -n "$$found" ] || { echo "make: no Lua here loads $(MODULE)" >&2; exit 1; }; \
              $$found tools/gen.lua
GEN_INPUTS  := $(MODULE) $(wildcard tools/*.lua) $(LUA_LAYER) docs/objects.luadoc docs/api.md \
               docs/cli.md CHANGELOG.md
generated: $(GENERATED)
man: $(GEN_DIR)/man/man1/faceswap.1
completion: $(GEN_DIR)/bash-completion/completions/faceswap
types: $(GEN_DIR)/lua-faceswap/library/faceswap.lua
$(GEN_DIR)/man/man1/faceswap.1: $(GEN_INPUTS)
	@mkdir -p $(dir $@)
	@$(GEN) man $(BUILD) >$@.tmp && mv $@.tmp $@ && echo "made $@"
$(GEN_DIR)/bash-completion/completions/faceswap: $(GEN_INPUTS)
	@mkdir -p $(dir $@)
	@$(GEN) completion $(BUILD) >$@.tmp && mv $@.tmp $@ && echo "made $@"
$(GEN_DIR)/lua-faceswap/library/faceswap.lua: $(GEN_INPUTS)
	@mkdir -p $(dir $@)
	@$(GEN) types $(BUILD) >$@.tmp && mv $@.tmp $@ && echo "made $@"
docs-tables: all
	@$(GEN) docs-tables $(BUILD)
lint-lua: lint-tools
lint-tools:
	luacheck --quiet --codes tools

clean:
	rm -rf build
