# httpgate: PicoLisp's httpGate for systemd machines.
# make, make check, make install (PREFIX, DESTDIR), make run, make bench.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
CC         ?= cc
TLS_PKGS    = gnutls
CFLAGS     ?= -O2 -g
WARN        = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
              -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral
# Flags from pkg-config are asked for in each recipe, by the shell, not
# when make reads this file: `make check` and `make run` install the -dev
# packages first (test/deps.sh), and the build that follows must see them.
# need_pkg stops a recipe with a word when a package is missing.
TLS_CFLAGS  = $$(pkg-config --cflags $(TLS_PKGS))
TLS_LIBS    = $$(pkg-config --libs $(TLS_PKGS))
need_pkg    = @pkg-config --exists $(1) || { echo "make: pkg-config does not find $(1): make deps (test/deps.sh, as root) installs it" >&2; exit 1; }
.DEFAULT_GOAL := all
SAN         = -fsanitize=address,undefined -fno-omit-frame-pointer

# The per-connection gate is two programs from the same sources: httpgate
# links nothing but libc (each connection pays for what a process loads) and
# becomes httpgate-tls, which adds GnuTLS, when a certificate is configured.
CORE = src/util.c src/names.c src/index.c src/route.c src/request.c src/chunked.c src/options.c \
       src/reply.c src/log.c src/client.c src/backend.c src/spawn.c src/rewrite.c src/response.c src/head.c src/inflight.c src/relay.c src/main.c \
       src/cpu.c src/mark.c
CORE += src/launch.c src/sandbox.c src/seccomp.c
HDRS = src/httpgate.h src/relay.h build/seccomp-filter.h

# The system call filter's body, written by a program of the build's own
# (src/seccomp-gen.c) from the list of allowed calls.
build/seccomp-filter.h: src/seccomp-gen.c
	@mkdir -p build
	$(CC) $(WARN) -O1 -o build/seccomp-gen src/seccomp-gen.c
	build/seccomp-gen >$@.tmp && mv $@.tmp $@

all: httpgate httpgate-tls

# The plain gate is linked statically against musl when musl-gcc is there
# (Debian's musl-tools): no dynamic loading and no CPU-feature probing at
# start, which halves what a process start costs per connection.
GATE_CC ?= $$(command -v musl-gcc >/dev/null 2>&1 && echo musl-gcc -static || echo $(CC))
httpgate: $(CORE) src/notls.c $(HDRS)
	$(GATE_CC) $(WARN) $(CFLAGS) -o $@ $(CORE) src/notls.c

# How httpgate-tls is linked (TLS_LINK). Each HTTPS connection is a new
# process, so what a process costs before main counts for every one:
#   musl    the default where musl-gcc and Debian 12's archives of GnuTLS
#           and its crypto libraries are there: one static musl program.
#           glibc's start asks the CPU (CPUID) some 70 times, which traps to
#           the hypervisor on a virtual machine (make bench: 0.6 ms per
#           process here); musl asks nothing. p11-kit and libunistring have
#           no archive: src/tls-static.c says why the server needs neither.
#           Its allocator is src/tls-alloc.c: musl's costs GnuTLS more.
#   glibc   GnuTLS, nettle, hogweed, gmp, tasn1, idn2 static, glibc, p11-kit
#           and libunistring shared.
#   shared  the usual link, everything shared (also where archives lack).
TLS_LINK ?= musl
TLS_ARCHIVES = gnutls hogweed nettle gmp tasn1 idn2
TLS_GLIBC_LIBS = -Wl,-Bstatic $(TLS_ARCHIVES:%=-l%) -Wl,-Bdynamic -lp11-kit -l:libunistring.so.2

TLS_SRCS = $(CORE) src/tls.c src/tls-static.c src/tls-alloc.c

# $(call tls_link,HOW): links $@ as HOW says (falling back as above).
define tls_link
	$(call need_pkg,$(TLS_PKGS))
	@d=$$(pkg-config --variable=libdir gnutls); how=$(1); \
	for a in $(TLS_ARCHIVES); do [ -e $$d/lib$$a.a ] || how=shared; done; \
	[ $$how != glibc ] || [ -e $$d/libunistring.so.2 ] || how=shared; \
	[ $$how != musl ] || command -v musl-gcc >/dev/null || how=glibc; \
	echo "$@: TLS_LINK=$$how"; set -x; case $$how in \
	musl) mkdir -p build/tls-include && ln -sfn $$(pkg-config --variable=includedir gnutls)/gnutls build/tls-include/gnutls && \
	      musl-gcc -static $(WARN) $(CFLAGS) -DHTTPGATE_TLS -Ibuild/tls-include -o $@ $(TLS_SRCS) \
	          $(TLS_ARCHIVES:%=$$d/lib%.a) ;; \
	glibc) $(CC) $(WARN) $(CFLAGS) -DHTTPGATE_TLS $(TLS_CFLAGS) -o $@ $(CORE) src/tls.c $(TLS_GLIBC_LIBS) ;; \
	*) $(CC) $(WARN) $(CFLAGS) -DHTTPGATE_TLS $(TLS_CFLAGS) -o $@ $(CORE) src/tls.c $(TLS_LIBS) ;; \
	esac
endef

httpgate-tls: $(TLS_SRCS) $(HDRS)
	$(call tls_link,$(TLS_LINK))

# make bench: the other two links, measured beside the default.
build/bench/httpgate-tls-%: $(TLS_SRCS) $(HDRS)
	@mkdir -p build/bench
	$(call tls_link,$*)

# The test build: the same sources with ASan and UBSan.
build/httpgate-san: $(CORE) src/notls.c $(HDRS) build/httpgate-tls
	@mkdir -p build
	$(CC) $(WARN) -O1 -g $(SAN) -o $@ $(CORE) src/notls.c

build/httpgate-tls: $(CORE) src/tls.c $(HDRS)
	@mkdir -p build
	$(call need_pkg,$(TLS_PKGS))
	$(CC) $(WARN) -O1 -g $(SAN) -DHTTPGATE_TLS $(TLS_CFLAGS) -o $@ $(CORE) src/tls.c $(TLS_LIBS)

# tier-51's probe: enters the sandbox as main.c does, then tries what it
# must not be able to do. No sanitizers: their run time needs more system calls.
build/sandbox-probe: $(filter-out src/main.c,$(CORE)) src/notls.c test/sandbox-probe.c $(HDRS)
	@mkdir -p build
	$(CC) $(WARN) -O1 -g -Isrc -o $@ $(filter-out src/main.c,$(CORE)) src/notls.c test/sandbox-probe.c

UNIT_SRC = $(filter-out src/main.c,$(CORE)) src/tls.c
build/unit: $(UNIT_SRC) test/unit.c $(HDRS)
	@mkdir -p build
	$(call need_pkg,$(TLS_PKGS))
	$(CC) $(WARN) -O1 -g $(SAN) -Isrc $(TLS_CFLAGS) -o $@ $(UNIT_SRC) test/unit.c $(TLS_LIBS)

deps:
	@test/deps.sh

# The targets that install what they lack build in a second make, started
# after test/deps.sh, so that what the build looks for is there.
check: deps
	@$(MAKE) --no-print-directory all build/httpgate-san build/unit build/sandbox-probe
	@test/run-all.sh

run: deps
	@$(MAKE) --no-print-directory all
	@contrib/run-demo.sh

install: all
	install -D -m 0755 httpgate $(DESTDIR)$(BINDIR)/httpgate
	install -D -m 0755 httpgate-tls $(DESTDIR)$(BINDIR)/httpgate-tls
	install -D -m 0644 man/httpgate.8 $(DESTDIR)$(MANDIR)/man8/httpgate.8
	install -D -m 0644 man/httpgate.names.5 $(DESTDIR)$(MANDIR)/man5/httpgate.names.5
	install -D -m 0755 contrib/httpgate-clf $(DESTDIR)$(BINDIR)/httpgate-clf
	install -D -m 0644 man/httpgate-clf.1 $(DESTDIR)$(MANDIR)/man1/httpgate-clf.1

clean:
	rm -rf httpgate httpgate-tls build

.PHONY: all deps check run install clean

# Fuzzing (libFuzzer, clang): `make fuzz` runs each target FUZZ_SECONDS;
# make check runs them briefly and replays every saved crash input.
FUZZ_TARGETS = request chunked names response
FUZZ_SRC     = $(filter-out src/main.c,$(CORE)) src/notls.c
FUZZ_SECONDS ?= 300
build/fuzz-%: test/fuzz/fuzz-%.c $(FUZZ_SRC) $(HDRS)
	@mkdir -p build
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -o $@ $< $(FUZZ_SRC)

fuzz: $(FUZZ_TARGETS:%=build/fuzz-%)
	@for t in $(FUZZ_TARGETS); do FUZZ_SECONDS=$(FUZZ_SECONDS) test/fuzz/run.sh $$t || exit 1; done

# The systemd side: the privileged launcher (the only program that links
# libsystemd), the units, sysusers.d and tmpfiles.d files (units/).
LIBEXECDIR  ?= $(PREFIX)/libexec
UNITDIR     ?= $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
SYSUSERSDIR ?= $(shell pkg-config --variable=sysusersdir systemd 2>/dev/null || echo /usr/lib/sysusers.d)
TMPFILESDIR ?= $(shell pkg-config --variable=tmpfilesdir systemd 2>/dev/null || echo /usr/lib/tmpfiles.d)
DBUSPOLICYDIR ?= /usr/share/dbus-1/system.d
SD_CFLAGS    = $$(pkg-config --cflags libsystemd)
SD_LIBS      = $$(pkg-config --libs libsystemd)
LAUNCHER     = src/launcher.c src/launcher_unit.c src/launcher_idle.c src/sockdiag.c src/util.c src/names.c \
               src/index.c
UNITS        = units/httpgate.socket units/httpgate-tls.socket units/httpgate-launch.socket \
               units/httpgate-idle.timer
UNITS_IN     = units/httpgate@.service.in units/httpgate-tls@.service.in units/httpgate-launch@.service.in \
               units/httpgate-idle.service.in

all: httpgate-launch

httpgate-launch: $(LAUNCHER) src/launcher.h src/sockdiag.h $(HDRS)
	$(call need_pkg,libsystemd)
	$(CC) $(WARN) $(CFLAGS) $(SD_CFLAGS) -o $@ $(LAUNCHER) $(SD_LIBS)

install: install-systemd
install-systemd: httpgate-launch
	install -D -m 0755 httpgate-launch $(DESTDIR)$(LIBEXECDIR)/httpgate-launch
	install -d $(DESTDIR)$(UNITDIR)
	install -m 0644 $(UNITS) $(DESTDIR)$(UNITDIR)/
	for u in $(UNITS_IN); do \
		sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' $$u \
			>$(DESTDIR)$(UNITDIR)/$$(basename $$u .in) && chmod 0644 $(DESTDIR)$(UNITDIR)/$$(basename $$u .in); \
	done
	install -D -m 0644 units/httpgate.sysusers $(DESTDIR)$(SYSUSERSDIR)/httpgate.conf
	install -D -m 0644 units/httpgate.tmpfiles $(DESTDIR)$(TMPFILESDIR)/httpgate.conf
	install -D -m 0644 units/httpgate.dbus.conf $(DESTDIR)$(DBUSPOLICYDIR)/httpgate.conf
	install -D -m 0644 man/httpgate-launch.8 $(DESTDIR)$(MANDIR)/man8/httpgate-launch.8
	install -D -m 0644 man/httpgate.units.5 $(DESTDIR)$(MANDIR)/man5/httpgate.units.5
	@# Into the running system (no DESTDIR), as a package would: the user,
	@# the directories, and systemd reads the new units.
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemd-sysusers $(SYSUSERSDIR)/httpgate.conf && \
		systemd-tmpfiles --create $(TMPFILESDIR)/httpgate.conf && systemctl daemon-reload; fi

clean: clean-systemd
clean-systemd:
	rm -f httpgate-launch

.PHONY: install-systemd clean-systemd

.PHONY: fuzz

# make bench: httpgate against its peers on loopback, in a private network
# namespace; prints the tables and writes bench/results.md (bench/README-perf.md
# says what the columns mean). BENCH_QUICK=1 for a smoke run of a minute.
build/bench/relay-glibc: bench/relay.c
	@mkdir -p build/bench
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -o $@ bench/relay.c

build/bench/tlsload: bench/tlsload.c
	@mkdir -p build/bench
	$(call need_pkg,$(TLS_PKGS))
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror $(TLS_CFLAGS) -o $@ bench/tlsload.c $(TLS_LIBS)

build/bench/relay-musl: bench/relay.c
	@mkdir -p build/bench
	if command -v musl-gcc >/dev/null 2>&1; then musl-gcc -static -O2 -Wall -Wextra -Werror -o $@ bench/relay.c; fi

bench: deps
	@$(MAKE) --no-print-directory all build/bench/relay-glibc build/bench/relay-musl build/bench/tlsload \
		build/bench/httpgate-tls-glibc build/bench/httpgate-tls-shared
	@if [ -n "$(BENCH_BASELINE)" ]; then \
		rm -rf build/bench/baseline && mkdir -p build/bench/baseline && \
		git archive "$(BENCH_BASELINE)" | tar -x -C build/bench/baseline && \
		$(MAKE) --no-print-directory -C build/bench/baseline httpgate >/dev/null; fi
	@BENCH_BASELINE="$(BENCH_BASELINE)" bench/run.py

.PHONY: bench

# make robustness: tier-70 (hostile clients, faulty apps and configs, bytes
# compared end to end, fuzzing) prints its table of figures and writes it to
# test/robustness/figures.md (test/robustness/README-robustness.md says what
# each figure means). ROBUSTNESS_FULL=1 for bigger numbers; make check runs
# the same tier with its quick numbers. Needs root, as make check does.
ROBUSTNESS_FUZZ_SECONDS ?= 30
robustness: deps
	@$(MAKE) --no-print-directory all build/httpgate-san $(FUZZ_TARGETS:%=build/fuzz-%)
	ROBUSTNESS_FIGURES=$(CURDIR)/test/robustness/figures.md ROBUSTNESS_FUZZ_SECONDS=$(ROBUSTNESS_FUZZ_SECONDS) \
		ROBUSTNESS_FULL=$(ROBUSTNESS_FULL) test/tier-70-robustness.py

.PHONY: robustness
