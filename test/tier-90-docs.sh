#!/bin/sh
# tier-90-docs: the documentation says what the code does. The man pages
# are lint-clean; every long option of `httpgate --help`, every exit code
# of src/httpgate.h, every HTTPGATE_* journal field of src/log.c and every
# status of src/reply.c is in httpgate(8); the README has its two commands.
# Prints "ok - ..." / "not ok - ..." per check (test/run-all.sh counts them).
cd "$(dirname "$0")/.." || exit 1

failed=0
ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+  # $2}"; failed=1; }
check() { # check NAME COMMAND...: ok when the command succeeds
        name=$1
        shift
        if "$@"; then ok "$name"; else notok "$name"; fi
}

page=man/httpgate.8

# The rendered text, without overstrike, on lines long enough that no
# option is broken across two.
render() {
        mandoc -T ascii -O width=400 "$1" | sed 's/.\x08//g'
}

# The source lines of one section of an mdoc page.
section() {
        awk -v s=".Sh $2" '$0 == s { on = 1; next } /^\.Sh / { on = 0 } on' "$1"
}

if ! command -v mandoc >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mandoc >/dev/null 2>&1 ||
                { apt-get update -q >/dev/null 2>&1 &&
                  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mandoc >/dev/null 2>&1; }
fi
if ! command -v mandoc >/dev/null 2>&1; then
        notok "mandoc is installed" "apt-get install mandoc (test/deps.sh does)"
        exit 1
fi

# ---- the man pages are clean ----
pages=$(ls man/*.[1-9] 2>/dev/null)
[ -n "$pages" ] || notok "man/ holds man pages"
for p in $pages; do
        out=$(mandoc -T lint -W warning "$p" 2>&1)
        if [ -z "$out" ]; then ok "mandoc -Tlint -Wwarning clean: $p"; else notok "mandoc -Tlint -Wwarning clean: $p" "$out"; fi
done
check "httpgate(8) exists" test -f "$page"
check "httpgate.names(5) exists" test -f man/httpgate.names.5

# ---- every long option of --help is documented ----
if [ -x ./httpgate ]; then
        text=$(render "$page")
        opts=$(./httpgate --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u)
        [ -n "$opts" ] || notok "httpgate --help lists long options"
        for o in $opts; do
                if printf '%s\n' "$text" | grep -q -e "$o\\b"; then
                        ok "httpgate(8) documents $o"
                else
                        notok "httpgate(8) documents $o"
                fi
        done
else
        notok "./httpgate is built (run make)"
fi

# ---- every exit code is in EXIT STATUS ----
exits=$(section "$page" "EXIT STATUS" | sed -n 's/^\.It \([0-9][0-9]*\)$/\1/p')
codes=$(sed -n '/^enum {/,/^};/p' src/httpgate.h | sed -n 's/^[[:space:]]*\(EXIT_[A-Z_]*\)[[:space:]]*=[[:space:]]*\([0-9][0-9]*\).*/\1=\2/p')
[ -n "$codes" ] || notok "src/httpgate.h has an exit code enum"
for c in $codes; do
        n=${c#*=}
        if printf '%s\n' "$exits" | grep -qx "$n"; then
                ok "EXIT STATUS lists ${c%%=*} ($n)"
        else
                notok "EXIT STATUS lists ${c%%=*} ($n)"
        fi
done
for n in $exits; do
        if printf '%s\n' "$codes" | grep -q "=$n\$"; then
                ok "exit status $n of httpgate(8) is in src/httpgate.h"
        else
                notok "exit status $n of httpgate(8) is in src/httpgate.h"
        fi
done

# ---- every journal field is documented ----
for f in $(grep -o 'HTTPGATE_[A-Z_]*=' src/log.c | tr -d = | sort -u); do
        check "httpgate(8) documents the journal field $f" grep -q "^\.It Va $f\$" "$page"
done

# ---- every status the gate answers with is in ANSWERS ----
answers=$(section "$page" "ANSWERS" | sed -n 's/^\.It \([0-9][0-9][0-9]\)$/\1/p')
for s in $(sed -n 's/^[[:space:]]*case \([0-9][0-9][0-9]\): return ".*/\1/p' src/reply.c); do
        [ "$s" = 101 ] && continue # relayed from the app, never the gate's own
        if printf '%s\n' "$answers" | grep -qx "$s"; then
                ok "ANSWERS lists $s"
        else
                notok "ANSWERS lists $s"
        fi
done

# ---- the README's two commands ----
check "README.md exists" test -f README.md
check "README mentions make check" grep -q 'make check' README.md
check "README mentions make run" grep -q 'make run' README.md
check "LICENSE is MIT" grep -q 'MIT License' LICENSE

exit $failed
