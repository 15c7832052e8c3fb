# httpgate: PicoLisp's httpGate for systemd machines.
# make, make check, make install (PREFIX, DESTDIR), make run, make bench.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
CC         ?= cc
PKGS        = libsystemd gnutls
CFLAGS     ?= -O2 -g
WARN        = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
              -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
SAN         = -fsanitize=address,undefined -fno-omit-frame-pointer

CORE = src/util.c src/names.c src/route.c src/request.c src/chunked.c src/options.c \
       src/reply.c src/log.c src/client.c src/tls.c src/backend.c src/spawn.c src/relay.c
HDRS = src/httpgate.h

all: httpgate

httpgate: $(CORE) src/main.c $(HDRS)
	$(CC) $(WARN) $(CFLAGS) $(PKG_CFLAGS) -o $@ $(CORE) src/main.c $(PKG_LIBS)

# The test build: the same sources with ASan and UBSan.
build/httpgate-san: $(CORE) src/main.c $(HDRS)
	@mkdir -p build
	$(CC) $(WARN) -O1 -g $(SAN) $(PKG_CFLAGS) -o $@ $(CORE) src/main.c $(PKG_LIBS)

build/unit: $(CORE) test/unit.c $(HDRS)
	@mkdir -p build
	$(CC) $(WARN) -O1 -g $(SAN) -Isrc $(PKG_CFLAGS) -o $@ $(CORE) test/unit.c $(PKG_LIBS)

deps:
	@test/deps.sh

check: deps all build/httpgate-san build/unit
	@test/run-all.sh

run: deps all
	@contrib/run-demo.sh

install: all
	install -D -m 0755 httpgate $(DESTDIR)$(BINDIR)/httpgate
	install -D -m 0644 man/httpgate.8 $(DESTDIR)$(MANDIR)/man8/httpgate.8
	install -D -m 0644 man/httpgate.names.5 $(DESTDIR)$(MANDIR)/man5/httpgate.names.5

clean:
	rm -rf httpgate build

.PHONY: all deps check run install clean
