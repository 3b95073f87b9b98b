# lua-faceswap: build, test, demo, bench, install, clean.
# `make demo` and `make test` are the two commands of the README; both install missing Debian
# packages first when run as root, and print the exact apt-get command otherwise.

LUA_VERSION ?= 5.4
LUA         ?= lua$(LUA_VERSION)
PKG_CONFIG  ?= pkg-config
CC          ?= cc
CFLAGS      ?= -O2 -g
WARN        ?= -Wall -Wextra -Werror
# The version lives in one place: the rockspec's file name.
ROCKSPEC    := $(firstword $(wildcard rockspec/lua-faceswap-*.rockspec))
VERSION     := $(patsubst rockspec/lua-faceswap-%.rockspec,%,$(ROCKSPEC))
VERSION     := $(firstword $(subst -, ,$(VERSION)))

LUA_INCDIR  ?= $(shell $(PKG_CONFIG) --variable=includedir lua$(LUA_VERSION) 2>/dev/null)/lua$(LUA_VERSION)
CURL_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS   ?= $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)
LIBFLAG     ?= -shared

BUILD       ?= build/$(LUA_VERSION)
MODULE      := $(BUILD)/faceswap/core.so
SOURCES     := $(wildcard csrc/*.c)
OBJECTS     := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SOURCES))
ALL_CFLAGS  := $(CFLAGS) $(WARN) -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden \
               -I$(LUA_INCDIR) $(CURL_CFLAGS) -DFACESWAP_VERSION='"$(VERSION)"' -MMD -MP

# Install locations (luarocks passes its own).
PREFIX      ?= /usr/local
INST_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
INST_LUADIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)
INST_BINDIR ?= $(PREFIX)/bin

# Debian packages each command needs.
BUILD_DEBS  := gcc make pkg-config lua$(LUA_VERSION) liblua$(LUA_VERSION)-dev libcurl4-openssl-dev lua-cjson lua-socket
TEST_DEBS   := $(BUILD_DEBS) lua-busted lua-check valgrind cppcheck luarocks

.PHONY: all test demo bench install clean deps-build deps-test lint lint-lua lint-c

all: $(MODULE)

$(MODULE): $(OBJECTS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) -o $@ $(OBJECTS) $(CURL_LIBS) $(LDFLAGS)

$(BUILD)/obj/%.o: csrc/%.c Makefile $(ROCKSPEC)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

-include $(OBJECTS:.o=.d)

deps-build:
	@sh spec/support/debs.sh $(BUILD_DEBS)

deps-test:
	@sh spec/support/debs.sh $(TEST_DEBS)

demo: deps-build
	@$(MAKE) --no-print-directory all
	@$(LUA) spec/support/demo.lua

test: deps-test
	@$(MAKE) --no-print-directory all
	@LUA=$(LUA) LUA_VERSION=$(LUA_VERSION) bash spec/support/test.sh

lint: lint-lua lint-c

lint-lua:
	luacheck --quiet --codes lua spec

lint-c:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --suppress=missingIncludeSystem -I csrc -DFACESWAP_VERSION='"$(VERSION)"' \
	  -DLUA_VERSION_NUM=504 csrc

bench: all
	bash spec/bench/run.sh

install: all
	install -d $(DESTDIR)$(INST_LIBDIR)/faceswap $(DESTDIR)$(INST_LUADIR)/faceswap
	install -m 755 $(MODULE) $(DESTDIR)$(INST_LIBDIR)/faceswap/core.so
	install -m 644 lua/faceswap/*.lua $(DESTDIR)$(INST_LUADIR)/faceswap/
	install -d $(DESTDIR)$(INST_BINDIR)
	install -m 755 bin/faceswap $(DESTDIR)$(INST_BINDIR)/faceswap

clean:
	rm -rf build
