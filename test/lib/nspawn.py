"""nspawn: a real systemd to test and measure httpgate in.

Container boots this machine's own root as a container: an overlay (lower
"/", upper a temporary directory) booted with `systemd-nspawn --boot
--private-network`, with httpgate installed into it by `make install
DESTDIR=<overlay> PREFIX=/usr`. Commands run inside through `nsenter -t
<container init> -a`. The private network keeps whatever the container
listens on off the machine's ports. stop() undoes everything (nspawn stopped
by its PID, the overlay unmounted, the directory removed), whatever state
start() got to.

Used by test/tier-50-systemd.py, test/tier-51-systemd-security.py and
bench/nspawn.py. run_tier() is a tier's main(): skip line, signals, boot,
the tests in turn, teardown.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ctclient.py")
BOOT_TIMEOUT = 60        # seconds until the container's systemd is up

# A boot target with only what the tests need: the machine's own services
# (a web server on port 80, databases) stay off.
TEST_TARGET = """[Unit]
Description=httpgate test boot
Requires=basic.target
After=basic.target
AllowIsolate=yes
"""


def text(value):
    """A journal field as a string (journalctl -o json gives byte arrays for
    fields that are not valid UTF-8)."""
    return value if isinstance(value, str) else str(value)


def leader_of(nspawn_pid):
    """The container's init: the child of systemd-nspawn (in any of its
    threads) once it has executed init. Before, the child may be nspawn's
    short-lived outer child, whose PID would lead nowhere once it exits."""
    try:
        for t in os.listdir("/proc/%d/task" % nspawn_pid):
            for kid in open("/proc/%d/task/%s/children" % (nspawn_pid, t)).read().split():
                if open("/proc/%s/comm" % kid).read().strip() != "systemd-nspawn":
                    return int(kid)
    except (OSError, ValueError):
        pass
    return 0


# nspawn's own system call filter (systemd 252) refuses Landlock with EPERM;
# a machine booted directly has it, and the gate's sandbox needs it.
LANDLOCK_CALLS = "landlock_create_ruleset landlock_add_rule landlock_restrict_self"


class Container:
    """A booted overlay of "/" with its own systemd.

    name: the machine name (the PID is appended); parents: where the
    temporary directory may go, tried in turn (the upper directory cannot be
    on an overlay itself, as a container's root often is); target: the unit
    booted (None: the default target); wrap: an argv prefix for
    systemd-nspawn (bench: move it into cgroups); mask: units of this
    machine that must not start inside; env: systemd-nspawn's environment
    (None: this one's)."""

    def __init__(self, name="hgtest", parents=("/var/tmp", "/tmp", "/dev/shm"), target=TEST_TARGET, wrap=(),
                 mask=(), env=None):
        self.name = "%s-%d" % (name, os.getpid())
        self.parents, self.target, self.wrap, self.mask, self.env = parents, target, list(wrap), mask, env
        self.base = self.nspawn = self.log = None
        self.leader = 0
        self.mounted = False

    @property
    def root(self):
        return self.base + "/root"

    def _mount(self):
        for parent in self.parents:
            try:
                base = tempfile.mkdtemp(prefix=self.name + "-", dir=parent)
            except OSError:
                continue
            for d in ("upper", "work", "root"):
                os.mkdir(os.path.join(base, d))
            r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                                "lowerdir=/,upperdir=%s/upper,workdir=%s/work" % (base, base),
                                base + "/root"], capture_output=True, text=True)
            if r.returncode == 0:
                self.base, self.mounted = base, True
                return True
            shutil.rmtree(base, ignore_errors=True)
        return False

    def write(self, path, data, mode=0o644):
        """A file inside, written from outside (before or after the boot)."""
        p = self.root + path
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.chmod(p, mode)

    def start(self, before_boot=None):
        """Mount, install, boot. None when the container runs, else why not.
        before_boot(self) may write files into the root first."""
        if not self._mount():
            return "cannot mount an overlay of / (in %s)" % " or ".join(self.parents)
        r = subprocess.run(["make", "-s", "-C", TOP, "install", "DESTDIR=" + self.root, "PREFIX=/usr"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return "make install failed: " + (r.stderr or r.stdout)[-500:]
        self.write("/etc/hgtest-machine", "")  # marks the overlay as ours
        with open(CLIENT) as f:
            self.write("/opt/hgtest/client.py", f.read())
        for unit in self.mask:
            link = self.root + "/etc/systemd/system/" + unit
            if not os.path.lexists(link):
                os.makedirs(os.path.dirname(link), exist_ok=True)
                os.symlink("/dev/null", link)
        argv = ["systemd-nspawn", "-q", "-D", self.root, "-M", self.name, "--boot", "--private-network",
                "--register=no", "--keep-unit", "--console=passive", "--system-call-filter=" + LANDLOCK_CALLS]
        if self.target:
            self.write("/etc/systemd/system/hgtest.target", self.target)
            argv.append("systemd.unit=hgtest.target")
        if before_boot:
            before_boot(self)
        self.log = open(self.base + "/console.log", "w")
        self.nspawn = subprocess.Popen(self.wrap + argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                       stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
        end = time.time() + BOOT_TIMEOUT
        while time.time() < end and self.nspawn.poll() is None:
            if not self.leader or not os.path.exists("/proc/%d" % self.leader):
                self.leader = leader_of(self.nspawn.pid)
            if self.leader:
                r = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
                if r.stdout.strip() in ("running", "degraded"):
                    return None
            time.sleep(0.1)
        return "the container did not boot within %ds: %s" % (
            BOOT_TIMEOUT, open(self.base + "/console.log").read()[-800:])

    def run(self, argv, check=True, timeout=300, user=None, stdin=None):
        """argv inside, as root or as user (setpriv, with that user's groups)."""
        pre = ["nsenter", "-t", str(self.leader), "-a"]
        if user:
            pre += ["setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups"]
        r = subprocess.run(pre + argv, capture_output=True, text=True, timeout=timeout, input=stdin)
        if check and r.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(argv), r.stderr.strip()[-300:]))
        return r

    def sh(self, script, check=True, timeout=300):
        return self.run(["sh", "-c", script], check=check, timeout=timeout)

    def client(self, *args, user=None, timeout=300, stdin=None):
        """A command of test/lib/ctclient.py run inside: its JSON answer."""
        r = self.run(["/usr/bin/python3", "/opt/hgtest/client.py"] + [str(a) for a in args], check=False,
                     user=user, timeout=timeout, stdin=stdin)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {"error": (r.stdout + r.stderr)[-300:]}

    def journal(self, *args, since=None):
        """Entries as dicts (journalctl -o json); since: only those journald
        received after that time.time() (the container's clock is ours).
        (Not --after-cursor: with a match, journalctl 252 skips the first
        matching entry after the cursor.)"""
        r = self.run(["journalctl", "--no-pager", "-o", "json"] + list(args), check=False)
        out = []
        for line in r.stdout.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if since is None or int(e.get("__REALTIME_TIMESTAMP", 0)) >= since * 1e6:
                out.append(e)
        return out

    def journal_until(self, pred, *args, since=None, timeout=5.0):
        """journal(*args) once pred(entries) holds, or as it is at the timeout:
        journald takes its time with a burst of entries."""
        end = time.time() + timeout
        while True:
            ents = self.journal(*args, since=since)
            if pred(ents) or time.time() > end:
                return ents
            time.sleep(0.2)

    def unit_prop(self, unit, prop):
        return self.run(["systemctl", "show", "-P", prop, unit], check=False).stdout.strip()

    def units(self, pattern):
        """Names of the loaded units matching pattern, in any state."""
        r = self.run(["systemctl", "list-units", "--all", "--no-legend", "--plain", pattern], check=False)
        return [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()]

    def security(self, unit):
        """systemd-analyze security's overall exposure for unit (99 if unreadable)."""
        r = self.run(["systemd-analyze", "security", "--no-pager", unit], check=False)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
        return float(m.group(1)) if m else 99.0

    def stop(self):
        if self.nspawn and self.nspawn.poll() is None:
            self.nspawn.terminate()  # nspawn powers the container off
            try:
                self.nspawn.wait(20)
            except subprocess.TimeoutExpired:
                for pid in (self.leader, self.nspawn.pid):
                    try:
                        os.kill(pid, signal.SIGKILL) if pid else None
                    except ProcessLookupError:
                        pass
                self.nspawn.wait(15)
        if self.log:
            self.log.close()
            self.log = None
        if self.mounted:
            for _ in range(50):
                if subprocess.run(["umount", self.root], capture_output=True).returncode == 0:
                    self.mounted = False
                    break
                time.sleep(0.2)
            if self.mounted:
                subprocess.run(["umount", "-l", self.root], capture_output=True)
                self.mounted = False
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


def run_tier(tier, setup, tests, ok, **container):
    """A tier's main(): boots a Container, runs setup(c) and each test(c) in
    turn (an exception fails that test, the rest still run), tears the
    container down whatever happens (also on SIGTERM, SIGINT, SIGHUP)."""
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn") or not shutil.which("nsenter"):
        print("# skip %s: needs root, systemd-nspawn (systemd-container) and nsenter" % tier)
        return
    c = Container(**container)

    def bye(signum, frame):
        raise SystemExit(1)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, bye)
    t0 = time.time()
    try:
        why = c.start()
        if not ok(why is None, "a container with httpgate installed boots (%.1f s)" % (time.time() - t0), why):
            return
        for test in [setup] + list(tests):
            t1 = time.time()
            try:
                test(c)
            except Exception as e:  # a broken step is a failure, and the rest still runs
                ok(False, "%s ran to its end" % test.__name__, repr(e))
                if test is setup:
                    break
            print("# %s: %.1f s" % (test.__name__, time.time() - t1), flush=True)
    finally:
        c.stop()
        print("# %s took %.1f s, container torn down" % (tier, time.time() - t0))
    ok(c.base is None and not c.mounted, "the container is gone")
