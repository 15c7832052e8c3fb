#!/usr/bin/python3
"""tier-70: robustness. Hostile clients, faulty apps and configs, byte
integrity and fuzzing, counted into a table of figures (issue 6).

Every case asserts its exact outcome: what the client gets (an answer, or a
clean close), what the gate's log says about that very connection (matched
through systemd-socket-activate's "Connection from ...:PORT" line to the
instance's pid), how the instance exits, and that nothing else was disturbed:
a well-behaved client keeps asking through the same gate while the attacks
run, and must get every answer. The app behind the hostile cases frames
requests strictly and checks every head it gets (the gate's X-Pil lines
first, no client X-Pil, CRLF only); at the end the number of heads it got
must equal the number of requests the gate logged as forwarded.

The parts are in test/robustness/: hostile.py (clients), faults.py (apps,
names files, launcher), integrity.py (large transfers, fuzzing), rlib.py (the
strict app, the log reader, the legitimate client, the figures), common.py
(numbers, ports), faultyapp.py (the misbehaving app).

ROBUSTNESS_FULL=1 uses bigger numbers; ROBUSTNESS_ONLY=hostile,timed,...
runs some parts only (see main);
ROBUSTNESS_FUZZ_SECONDS sets how long each fuzz target runs (0: not at all);
ROBUSTNESS_FIGURES names the file the table goes to (make robustness writes
test/robustness/figures.md; make check writes build/robustness-figures.md).
Ports 23000-23999. Needs root (apps run as httpgate-test).
"""
import os
import resource
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The gate runs from a private copy: a rebuild of build/httpgate-san during
# the run (others build too) must not fail an exec half way through a flood.
GATE_BUILT = os.environ.get("HTTPGATE", os.path.join(os.path.dirname(HERE), "build", "httpgate-san"))
BIN_DIR = tempfile.mkdtemp(prefix="httpgate-t70-bin.")
os.chmod(BIN_DIR, 0o755)
if os.path.exists(GATE_BUILT):
    shutil.copy2(GATE_BUILT, os.path.join(BIN_DIR, os.path.basename(GATE_BUILT)))
    os.environ["HTTPGATE"] = os.path.join(BIN_DIR, os.path.basename(GATE_BUILT))
sys.path.insert(0, os.path.join(HERE, "lib"))
sys.path.insert(0, os.path.join(HERE, "robustness"))
from gatetest import TOP, Gate, HttpBackend, ok, _results  # noqa: E402
from rlib import GateWatch, Legit, StrictBackend  # noqa: E402
from common import (FIG, FIGURES_PATH, FULL, FUZZ_SECONDS, G_HOSTILE, HEAD_TIMEOUT, IDLE_TIMEOUT, P_LEGIT,  # noqa: E402
                    P_STRICT, USER, Case, failed)
from hostile import hostile_sequence, load, pipelining, strict_totals, timed  # noqa: E402
from faults import app_setup, configs, faulty_apps, launcher  # noqa: E402
from integrity import fuzz, integrity  # noqa: E402


class _Tee:
    """stdout, keeping the failed assertions for the figures file."""

    def __init__(self, out):
        self.out, self.failures, self.part = out, [], ""

    def write(self, text):
        self.part += text
        *lines, self.part = self.part.split("\n")
        self.failures += [ln[len("not ok - "):].split("  # ")[0] for ln in lines if ln.startswith("not ok - ")]
        return self.out.write(text)

    def flush(self):
        self.out.flush()


TEE = _Tee(sys.stdout)
sys.stdout = TEE


def main():
    if os.geteuid() != 0:
        ok(False, "tier-70 runs as root (apps run as %s)" % USER)
        sys.exit(1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    t_start = time.time()
    tmp = tempfile.mkdtemp(prefix="httpgate-t70.")
    os.chmod(tmp, 0o755)
    gates, legits, cleanup = [], [], []
    ctx = {"tmp": tmp, "gates": gates, "cleanup": cleanup}
    try:
        legit_be = HttpBackend(P_LEGIT)
        legit_be.sock.listen(1024)
        strict = StrictBackend(P_STRICT)
        g = Gate(G_HOSTILE, ["--launcher=", "-p", str(P_STRICT), "--head-timeout", str(HEAD_TIMEOUT),
                             "--idle-timeout", str(IDLE_TIMEOUT)])
        gates.append(g)
        ctx.update(gate=g, watch=GateWatch(g), strict=strict)
        legit = Legit(G_HOSTILE, P_LEGIT)
        legits.append(("hostile clients", legit))
        legit.start()
        only = os.environ.get("ROBUSTNESS_ONLY", "").split(",")
        run = lambda key: only == [""] or key in only  # noqa: E731 - for working on one section
        ctx["legits"] = legits
        if run("hostile"):
            section("hostile clients, one connection at a time", hostile_sequence, ctx)
        if run("timed"):
            section("slow, silent, half-closed and resetting clients, at once", timed, ctx)
        if run("pipelining"):
            section("pipelining", pipelining, ctx)
        if run("hostile") or run("timed") or run("pipelining"):
            strict_totals(ctx)
        if run("load"):
            section("load", load, ctx)
        app_setup(ctx)
        if run("apps"):
            section("faulty apps", faulty_apps, ctx)
        if run("configs"):
            section("faulty configs", configs, ctx)
        if run("launcher"):
            section("the launcher down, refusing, misbehaving", launcher, ctx)
        if run("bulk"):
            section("bytes end to end", integrity, ctx)
        if run("fuzz"):
            section("fuzzing", fuzz, ctx)
    finally:
        for what, lg in legits:
            lg.stop()
        for x in gates:
            try:
                x.stop()
            except Exception:  # noqa: BLE001 - stop the others too
                pass
        for fn in cleanup:
            try:
                fn()
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(BIN_DIR, ignore_errors=True)
    with Case("legitimate clients"):
        for what, lg in legits:
            ok(lg.n > 0 and lg.good == lg.n, "a legitimate client kept getting its answers during %s "
               "(%d of %d, slowest %.2f s)" % (what, lg.good, lg.n, lg.slowest), lg.fails[:3])
            FIG.add("legit requests", lg.n)
            FIG.add("legit answered", lg.good)
            FIG.set("legit slowest", max(FIG.get("legit slowest", 0.0), lg.slowest))
    with Case("sanitizers"):
        bad = []
        for x in gates:
            bad += GateWatch(x).sanitizer_reports()
        ok(not bad, "no sanitizer report in any gate's log", bad[:3])
    FIG.set("seconds", time.time() - t_start)
    figures()
    sys.exit(0 if failed() == 0 else 1)


def section(title, fn, *args):
    t = time.time()
    print("# %s" % title, flush=True)
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - a tier runs to its end
        import traceback
        ok(False, "%s raised %s" % (title, type(e).__name__), traceback.format_exc().splitlines()[-1])
        traceback.print_exc()
    print("# %s: %.1f s" % (title, time.time() - t), flush=True)


def figures():
    """The table: printed, and written to FIGURES_PATH."""
    n = FIG.nums
    rows = [("category", "cases tried", "passed")]
    tot = [0, 0]
    for cat in FIG.order:
        tried, passed = FIG.cats[cat]
        rows.append((cat, str(tried), str(passed)))
        tot[0] += tried
        tot[1] += passed
    rows.append(("**all cases**", "**%d**" % tot[0], "**%d**" % tot[1]))
    faults = [FIG.cats[c] for c in FIG.order if c.startswith("faults:")]
    hostile = [FIG.cats[c] for c in FIG.order if c.startswith("hostile:")]
    mib = n.get("bytes compared", 0) / (1 << 20)
    fz = n.get("fuzz per", {})
    figs = [
        ("hostile-client cases tried (passed)", "%d (%d)" % (sum(x[0] for x in hostile), sum(x[1] for x in hostile))),
        ("connections held open at once", "%s, with %s requests on them; their instances' memory: %.0f MiB "
         "VmRSS in all" % (n.get("held connections", "-"), n.get("held requests", "-"), n.get("held rss MiB", 0))),
        ("slowloris clients at once", "%s, each cut off with 408 at the head timeout" % n.get("slowloris at once", "-")),
        ("flood of new connections", "%s in %.1f s (%.0f a second)" % (
            n.get("flood connections", "-"), n.get("flood seconds", 0),
            n.get("flood connections", 0) / n["flood seconds"] if n.get("flood seconds") else 0)),
        ("requests pipelined on one connection", "%s" % n.get("pipelined requests", "-")),
        ("legitimate requests answered during the attacks", "%s of %s, slowest %.2f s" % (
            n.get("legit answered", 0), n.get("legit requests", 0), n.get("legit slowest", 0.0))),
        ("peak memory (VmHWM) of an instance whose client reads nothing of 1 GiB",
         "%.1f MiB" % (n["reads-nothing VmHWM kB"] / 1024) if "reads-nothing VmHWM kB" in n else "-"),
        ("names file entries (a connection's time once indexed)", "%s (%.1f ms)" % (
            n.get("names entries", "-"), n.get("names ms", 0))),
        ("faults injected (apps, configs, launcher) / survived", "%d / %d" % (
            sum(x[0] for x in faults), sum(x[1] for x in faults))),
        ("bytes compared end to end (SHA-256)", "%.0f MiB" % mib),
        ("fuzz executions", "%d (%s; %d s a target)" % (n.get("fuzz runs", 0), ", ".join(
            "%s %d" % kv for kv in fz.items()), FUZZ_SECONDS) if fz else "not run"),
        ("assertions", "%d passed, %d failed" % (_results["passed"], _results["failed"])),
    ]
    out = ["| %s | %s | %s |" % r for r in rows[:1]] + ["|---|---:|---:|"] + ["| %s | %s | %s |" % r for r in rows[1:]]
    out += ["", "| figure | value |", "|---|---|"] + ["| %s | %s |" % r for r in figs]
    head = ("# httpgate robustness figures\n\nWritten by test/tier-70-robustness.py (%s, %s mode) on %s; the gate is "
            "%s, under systemd-socket-activate --accept; %.0f s.\n\n" % (
                "make robustness" if os.environ.get("ROBUSTNESS_FIGURES") else "make check",
                "full" if FULL else "quick", time.strftime("%Y-%m-%d"), os.path.relpath(GATE_BUILT, TOP),
                n.get("seconds", 0)))
    if TEE.failures:
        out += ["", "Failed assertions:", ""] + ["- " + f for f in TEE.failures]
    text = "\n".join(out) + "\n"
    print("\n" + text, flush=True)
    try:
        os.makedirs(os.path.dirname(FIGURES_PATH), exist_ok=True)
        with open(FIGURES_PATH, "w") as f:
            f.write(head + text)
        print("# figures written to %s" % os.path.relpath(FIGURES_PATH, TOP))
    except OSError as e:
        print("# figures not written: %s" % e)


if __name__ == "__main__":
    main()
