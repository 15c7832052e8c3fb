#!/usr/bin/python3
"""tier-51: HTTPS and the sandbox under a real systemd, installed as a user installs it.

Boots the machine's own root in a container (test/lib/nspawn.py: systemd-nspawn
--boot --private-network on an overlay of "/", `make install DESTDIR=`) and
checks, with clients run inside (test/lib/ctclient.py, curl, gnutls-cli):

TLS (issue 4), through the installed httpgate-tls.socket on port 443 with the
key and certificate in /etc/httpgate as httpgate.units(5) says (certificates
made here with certtool, a test CA): curl over HTTPS; TLS 1.0 and 1.1 refused
(gnutls-cli against a gnutls-serv control that accepts them); resumption in a
second process (gnutls-cli --resume) through the ticket key the first
instance created in the state directory (0600, the gate's user); X-Pil
*Gate=https and *Cipher at the app; a certificate replaced on disk served by
the next connection; the directory form (--tls-dir, certbot's layout) through
a drop-in: each host name its own certificate, hostile SNI names served the
default one.

Privilege and isolation (issues 6 and 10): a drop-in swaps each instance
unit's ExecStart for test/sandbox-probe.c with the unit's own arguments: it
enters the gate's sandbox (--sandbox: Landlock, seccomp, limits) exactly as
the gate does, then tries to write in every directory of the tree, to read
the TLS key file, /etc/shadow and other processes, to talk to the system bus
and systemd's private socket, to exec, fork, ptrace, signal, listen, open
sockets of other families, map executable memory, and reports to its
client; the drop-in is then removed. The real gate's instances are looked
at from outside while they wait for their first byte, in the middle of a
request head, of a TLS handshake, after an answer on a kept-alive connection
and with an unreadable names file: each is already confined. The launcher, called directly as the user httpgate, is sent
names with "../", "/", blanks, shell metacharacters, NUL, CR, overlong names,
a redirect entry, root and gid-0 users: each refused with an answer and a
journal entry, and no unit but httpgate-app-echo ever appears. Requests with
hostile targets get the documented 4xx and start nothing, create no file.

Needs root, systemd-nspawn and overlayfs; prints a skip line otherwise. The
container is torn down whatever happens, also on SIGTERM.
"""
import json
import os
import re
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "test", "lib"))
from gatetest import done, ok  # noqa: E402
from nspawn import run_tier, text  # noqa: E402

# ---- what goes into the container -------------------------------------

# The app: answers with its name, the path it got and every header field.
ECHO = r'''#!/usr/bin/python3
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("app=%s path=%s\n%s" % (os.environ.get("NAME"), self.path, self.headers)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''

NAMES = """# names file for tier-51
echo     4101 hgapp1 /srv/echo ^ ./echo.py
redir    0    http://example.org/
rootapp  4102 root   /srv/echo ^ ./echo.py
gid0app  4103 hggid0 /srv/echo ^ ./echo.py
gone     4104 hgapp1 /srv/gone ^ ./no-such-program
"""

# The probe tries each directory of the tree the test lists for it; its
# client waits at most this long for the answer.
PROBE_CLIENT_SECONDS = 60
PROBE = os.path.join(TOP, "build", "sandbox-probe")

CERT_TMPL = 'cn = "%s"\ndns_name = "%s"\nserial = %d\ntls_www_server\nsigning_key\nexpiration_days = 30\n'


def setup(c):
    c.write("/srv/echo/echo.py", ECHO, 0o755)
    c.write("/srv/gone/void", "<html>hgtest void marker</html>\n")
    with open(PROBE, "rb") as f:
        c.write("/opt/hgtest/sandbox-probe", f.read(), 0o755)
    c.write("/etc/httpgate/names", NAMES)
    c.sh("useradd --create-home hgapp1 && useradd -M -g 0 hggid0 && chown -R hgapp1: /srv/echo"
         " && systemctl start httpgate.socket")
    # an address of the machine's that is not loopback, for the probe to try
    c.sh("ip link set lo up && ip addr add 10.99.0.1/32 dev lo")
    # Every directory of the container's tree, for the probe to try. (On a
    # fresh machine none of it is in the page cache yet: a walk inside the
    # probe once took longer than its client waited. The list is made here,
    # as root, and the time it took is reported.)
    t0 = time.time()
    c.sh("find / -xdev -type d 2>/dev/null >/opt/hgtest/dirs.txt; find /tmp /var/tmp /run /dev/shm /dev/mqueue"
         " -xdev -type d 2>/dev/null >>/opt/hgtest/dirs.txt", check=False)
    n = c.sh("wc -l </opt/hgtest/dirs.txt", check=False).stdout.strip()
    print("# set-up: the container's tree listed (%s directories) in %.1f s" % (n, time.time() - t0))


# ---- TLS ------------------------------------------------------------------

def make_cert(c, name, cn, serial):
    """/etc/hgtest/NAME.key and NAME.pem (cn, signed by the test CA)."""
    c.write("/etc/hgtest/%s.tmpl" % name, CERT_TMPL % (cn, cn, serial))
    c.sh("cd /etc/hgtest && certtool --generate-privkey --key-type ecdsa --no-text --outfile {n}.key 2>/dev/null"
         " && certtool --generate-certificate --no-text --load-privkey {n}.key --load-ca-certificate ca.pem"
         " --load-ca-privkey ca.key --template {n}.tmpl --outfile {n}.pem 2>/dev/null".format(n=name))


def install_pair(c, name, key, chain, group="root", key_mode="600"):
    """Key and chain as certbot renews them (each file replaced whole)."""
    c.sh("cd /etc/hgtest && install -m {m} -g {g} {n}.key {k}.new && mv -f {k}.new {k}"
         " && cat {n}.pem ca.pem >{f}.new && chmod 644 {f}.new && mv -f {f}.new {f}".format(
             n=name, k=key, f=chain, g=group, m=key_mode))


def serial(r):
    try:
        return int(r.get("serial", ""), 16)
    except ValueError:
        return None


def gnutls_cli(c, *args, sni="localhost", verify=None):
    return c.run(["gnutls-cli", "--x509cafile", "/etc/hgtest/ca.pem", "--sni-hostname", sni, "--verify-hostname",
                  verify or sni] + list(args) + ["127.0.0.1"], stdin="", check=False, timeout=30)


def test_tls(c):
    c.write("/etc/hgtest/ca.tmpl", 'cn = "httpgate tier-51 CA"\nca\ncert_signing_key\nexpiration_days = 30\n')
    c.sh("cd /etc/hgtest && certtool --generate-privkey --key-type ecdsa --no-text --outfile ca.key 2>/dev/null"
         " && certtool --generate-self-signed --no-text --load-privkey ca.key --template ca.tmpl --outfile ca.pem"
         " 2>/dev/null")
    for name, cn, num in (("localhost", "localhost", 0x101), ("renewed", "localhost", 0x102),
                          ("a", "a.test", 0x201), ("b", "b.test", 0x202), ("d", "default.test", 0x203),
                          ("a2", "a.test", 0x204)):
        make_cert(c, name, cn, num)
    install_pair(c, "localhost", "/etc/httpgate/key.pem", "/etc/httpgate/cert.pem")
    # The machine's own /var/lib/httpgate (lower layer) must not lend a ticket key.
    c.sh("rm -rf /var/lib/httpgate && systemctl start httpgate-tls.socket")
    ok(c.run(["systemctl", "is-active", "httpgate-tls.socket"], check=False).stdout.strip() == "active",
       "httpgate-tls.socket listens on port 443")
    ok(c.run(["stat", "-c", "%U %a", "/etc/httpgate/key.pem"], check=False).stdout.strip() == "root 600",
       "the key file is root's, mode 0600, as httpgate.units(5) says")

    r = c.run(["curl", "-sS", "--cacert", "/etc/hgtest/ca.pem", "-w", "\n%{http_code}",
               "https://localhost/echo/tls"], check=False)
    ok(r.stdout.endswith("\n200") and "app=echo path=/tls" in r.stdout,
       "curl over HTTPS on port 443, verified against the test CA, reaches the app", r.stdout[-300:] + r.stderr)
    heads = r.stdout.splitlines()
    ok(heads.count("X-Pil: *Gate=https") == 1, "the app sees X-Pil: *Gate=https", r.stdout[-400:])
    cipher = [h.split("=", 1)[1] for h in heads if h.startswith("X-Pil: *Cipher=")]
    ok(len(cipher) == 1 and cipher[0].startswith("TLS_"), "the app sees X-Pil: *Cipher=%s" % cipher, r.stdout[-400:])
    st = c.run(["stat", "-c", "%U %G %a %s", "/var/lib/httpgate/ticket.key"], check=False).stdout.strip()
    ok(st == "httpgate httpgate 600 64",
       "the first connection created the ticket key in the state directory: 64 bytes, 0600, the gate's user", st)
    before = c.run(["sha256sum", "/var/lib/httpgate/ticket.key"], check=False).stdout

    for ver in ("TLS1.3", "TLS1.2"):
        p = gnutls_cli(c, "--resume", "--priority", "NORMAL:-VERS-ALL:+VERS-" + ver)
        ok(p.returncode == 0 and "This is a resumed session" in p.stdout,
           "%s: gnutls-cli --resume: the second connection (another instance) resumes the first's session" % ver,
           (p.returncode, p.stdout[-300:], p.stderr[-200:]))
    ok(c.run(["sha256sum", "/var/lib/httpgate/ticket.key"], check=False).stdout == before,
       "later instances keep the ticket key")

    # Old versions: refused by the gate, while the same client speaks them
    # to a gnutls-serv that allows them (a control, on the container's loopback).
    c.run(["systemd-run", "--unit=hgtest-gnutls-serv", "gnutls-serv", "--x509keyfile", "/etc/hgtest/localhost.key",
           "--x509certfile", "/etc/hgtest/localhost.pem", "-p", "9443", "--priority",
           "NORMAL:+VERS-TLS1.0:+VERS-TLS1.1"], check=False)
    mark = time.time()
    for ver in ("TLS1.0", "TLS1.1"):
        p = gnutls_cli(c, "--priority", "NORMAL:-VERS-ALL:+VERS-" + ver)
        ctl = c.run(["gnutls-cli", "--x509cafile", "/etc/hgtest/ca.pem", "-p", "9443", "--priority",
                     "NORMAL:-VERS-ALL:+VERS-" + ver, "localhost"], stdin="", check=False, timeout=30)
        ok(p.returncode != 0 and "Handshake was completed" not in p.stdout and "Handshake was completed" in ctl.stdout,
           "%s refused on port 443 (gnutls-cli --priority ...+VERS-%s; it works against gnutls-serv)" % (ver, ver),
           (p.stdout[-200:], ctl.stdout[-200:]))
    c.run(["systemctl", "stop", "hgtest-gnutls-serv"], check=False)

    def versions(ents):
        return [m for m in (text(e.get("MESSAGE", "")) for e in ents) if "unsupported version" in m]
    ents = c.journal_until(lambda e: len(versions(e)) >= 2, "-t", "httpgate", since=mark)
    ok(len(versions(ents)) == 2, "each refused version is in the journal", versions(ents))

    r1 = c.client("cert", "localhost")
    install_pair(c, "renewed", "/etc/httpgate/key.pem", "/etc/httpgate/cert.pem")
    r2 = c.client("cert", "localhost")
    ok(serial(r1) == 0x101 and serial(r2) == 0x102,
       "a certificate (and key) replaced in /etc/httpgate is served by the next connection", (r1, r2))
    ok(c.run(["systemctl", "is-failed", "--quiet", "httpgate-tls.socket"], check=False).returncode != 0,
       "httpgate-tls.socket is fine after all of it")


def test_tls_dir(c):
    # certbot's layout, readable by the group httpgate (httpgate.units(5):
    # the directory form cannot come through LoadCredential=).
    # a.test as certbot keeps it: live/ links into archive/, beside it (the
    # sandbox must let the gate follow them).
    for host, name in (("a.test", "a"), ("b.test", "b"), ("default", "d")):
        c.sh("mkdir -p /etc/httpgate/live/%s /etc/httpgate/archive/%s" % (host, host))
        where = "/etc/httpgate/archive/%s/%s1.pem" if host == "a.test" else "/etc/httpgate/live/%s/%s.pem"
        install_pair(c, name, where % (host, "privkey"), where % (host, "fullchain"), group="httpgate", key_mode="640")
    c.sh("cd /etc/httpgate/live/a.test && ln -s ../../archive/a.test/privkey1.pem privkey.pem"
         " && ln -s ../../archive/a.test/fullchain1.pem fullchain.pem")
    c.write("/etc/systemd/system/httpgate-tls@.service.d/hgtest-dir.conf",
            "[Service]\nExecStart=\nExecStart=/usr/bin/httpgate-tls --sandbox --tls-dir=/etc/httpgate/live "
            "/etc/httpgate/names\n")
    c.run(["systemctl", "daemon-reload"])
    try:
        got = {sni: c.client("cert", sni) for sni in ("a.test", "b.test", "-", "unknown.test")}
        ok(got["a.test"].get("cn") == "a.test" and got["b.test"].get("cn") == "b.test",
           "--tls-dir (a drop-in): SNI a.test gets a.test's certificate, b.test b.test's", got)
        ok(got["-"].get("cn") == "default.test" and got["unknown.test"].get("cn") == "default.test",
           "... no SNI, or a name it has no directory for, gets DIR/default's", got)
        for host in ("a.test", "b.test"):
            r = c.run(["curl", "-sS", "--cacert", "/etc/hgtest/ca.pem", "--resolve", host + ":443:127.0.0.1",
                       "-w", "\n%{http_code}", "https://%s/echo/%s" % (host, host)], check=False)
            ok(r.stdout.endswith("\n200") and "path=/" + host in r.stdout,
               "curl https://%s/ verifies the name and reaches the app" % host, r.stdout[-200:] + r.stderr)
        # GnuTLS itself refuses a name that is not a DNS name; the others
        # must not lead anywhere but to the default.
        mark = time.time()
        refused = 0
        for sni in ("..", "../../../etc/httpgate", "a.test/../b.test", "default/../a.test", "%2e%2e", ".a.test"):
            p = gnutls_cli(c, sni=sni, verify="default.test")
            served = re.findall(r"subject `CN=([^']*)'", p.stdout)[:1]
            refused += p.returncode != 0 and not served
            ok(served == ["default.test"] or (p.returncode != 0 and not served),
               "a hostile SNI name %r: %s" % (sni, "refused" if not served else "served %s" % served[0]),
               (p.stdout[-300:], p.stderr[-200:]))
        ents = c.journal_until(lambda e: sum("disallowed SNI" in text(x.get("MESSAGE", "")) for x in e) >= refused,
                               "-t", "httpgate", since=mark)
        ok(sum("disallowed SNI" in text(x.get("MESSAGE", "")) for x in ents) == refused,
           "... each refused one logged as such (%d)" % refused)
        install_pair(c, "a2", "/etc/httpgate/live/a.test/privkey.pem", "/etc/httpgate/live/a.test/fullchain.pem",
                     group="httpgate", key_mode="640")
        r = c.client("cert", "a.test")
        ok(serial(r) == 0x204 and serial(got["a.test"]) == 0x201,
           "a renewed a.test in the directory is served by the next connection", (got["a.test"], r))
        # b.test's key with a.test's certificate
        c.sh("mkdir -p /etc/httpgate/live/bad.test && cd /etc/hgtest"
             " && install -m 640 -g httpgate b.key /etc/httpgate/live/bad.test/privkey.pem"
             " && cat a.pem ca.pem >/etc/httpgate/live/bad.test/fullchain.pem")
        mark = time.time()
        p = gnutls_cli(c, sni="bad.test", verify="a.test")
        ok(p.returncode != 0 and "subject `" not in p.stdout, "a key that does not match its certificate: the "
           "handshake is refused", p.stdout[-200:])

        def bad(ents):
            return [m for m in (text(e.get("MESSAGE", "")) for e in ents)
                    if "/etc/httpgate/live/bad.test/privkey.pem does not belong" in m]
        ents = c.journal_until(lambda e: bad(e), "-t", "httpgate", since=mark)
        ok(len(bad(ents)) == 1, "... and the journal names the file", [e.get("MESSAGE") for e in ents][-3:])
        ok(c.client("cert", "b.test").get("cn") == "b.test", "... while the other names are served")
        print("# note: the directory form has the instance read the keys itself (group httpgate, httpgate.units(5));"
              " only the single-certificate form keeps the key from the gate's user")
    finally:
        c.run(["rm", "-f", "/etc/systemd/system/httpgate-tls@.service.d/hgtest-dir.conf"], check=False)
        c.run(["systemctl", "daemon-reload"], check=False)


# ---- privilege and isolation -----------------------------------------------

def exec_args(c, unit):
    """The installed unit's ExecStart= arguments (after the program)."""
    for line in c.sh("systemctl cat %s" % unit).stdout.splitlines():
        if line.startswith("ExecStart=") and len(line) > len("ExecStart="):
            return line.split(None, 1)[0][len("ExecStart="):], line.split(None, 1)[1]
    raise AssertionError("no ExecStart= in " + unit)


def probe(c, unit, port, sni):
    """test/sandbox-probe.c in the instance unit's place, with its arguments."""
    conf = "/etc/systemd/system/%s.d/hgtest-probe.conf" % unit
    prog, args = exec_args(c, unit)
    c.write(conf, "[Service]\nExecStart=\nExecStart=/opt/hgtest/sandbox-probe %s\n" % args)
    c.run(["systemctl", "daemon-reload"])
    try:
        r = c.client("probe", port, sni, "/opt/hgtest/dirs.txt", PROBE_CLIENT_SECONDS,
                     timeout=PROBE_CLIENT_SECONDS + 30)
        try:
            return prog, args, json.loads(r.get("body", ""))
        except ValueError:
            return prog, args, {"error": r}
    finally:
        c.run(["rm", "-f", conf], check=False)
        c.run(["systemctl", "daemon-reload"], check=False)


SHARED = ("/dev/shm", "/dev/mqueue", "/run/lock")   # world-writable places of the whole machine
REFUSED = ("EPERM", "EACCES", "EAFNOSUPPORT", "EROFS")


def test_sandbox(c):
    c.sh("touch /dev/shm/hgtest-outside /run/lock/hgtest-outside")
    for unit, port, sni, own in (("httpgate@.service", 80, "", ["/var/cache/httpgate"]),
                                 ("httpgate-tls@.service", 443, "",  # the probe speaks plain HTTP
                                  ["/var/cache/httpgate", "/var/lib/httpgate"])):
        t0 = time.time()
        prog, args, r = probe(c, unit, port, sni)
        print("# probe in %s (%.1f s): %s" % (unit, time.time() - t0, json.dumps(r)[:3000]))
        if not ok("error" not in r and r.get("walked"), "%s: the probe ran in its sandbox and reported" % unit,
                  r.get("error")):
            continue
        ok("--sandbox" in args.split(), "%s: the gate runs with --sandbox (%s %s)" % (unit, prog, args))
        stat = r["status"]
        ok(r["uid"] != 0 and int(stat["CapEff"], 16) == 0 and stat["NoNewPrivs"] == "1" and stat["Seccomp"] == "2",
           "%s: runs as uid %d, no capabilities, no new privileges, a seccomp filter" % (unit, r["uid"]), stat)
        ok(r["landlock_abi"] > 0, "%s: a Landlock ruleset is in force (ABI %d)" % (unit, r["landlock_abi"]))
        denied = {d: v for d, v in r["create"].items() if d not in own}
        ok(all(v in REFUSED + ("ENOENT",) for v in denied.values()),
           "%s: cannot create a file in /etc, /usr, /home, /root, /run, /srv, /var/lib, /var/log, /dev, /tmp, ..."
           % unit, {d: v for d, v in denied.items() if v == "ok"})
        ok(all(r["create"].get(d) == "ok" for d in own), "%s: can write its own %s" % (unit, " ".join(own)),
           r["create"])
        ok(all(v != "ok" for v in r["append"].values()),
           "%s: cannot open the names file, /etc/passwd, the app or itself for writing" % unit, r["append"])
        extra = [d for d in r["writable"] if not any(d == a or d.startswith(a + "/") for a in own)]
        ok(not extra, "%s: of the %s directories of the tree, none takes a new file but %s" % (
            unit, c.sh("wc -l </opt/hgtest/dirs.txt").stdout.strip(), " ".join(own)), extra)
        for d in ("/tmp", "/var/tmp") + SHARED:
            marker = "%s/%s" % (d, r["marker"])
            after = c.run(["test", "-e", marker], check=False).returncode == 0
            ok(r["create"][d] != "ok" and not after, "%s: cannot write %s, the machine's, shared with every process"
               % (unit, d), "it created %s (%s)" % (marker, "still there" if after else "gone"))
        ok(r["do"]["message queue"] in REFUSED, "%s: cannot make a POSIX message queue (%s)" % (
            unit, r["do"]["message queue"]))
        for f in ("/etc/httpgate/key.pem", "/etc/shadow", "/etc/passwd", "/proc/1/status"):
            ok(r["read"][f] in REFUSED + ("ENOENT",), "%s: cannot read %s (%s)" % (unit, f, r["read"][f]))
        ok(r["list"]["/proc"] in REFUSED and r["list"]["/"] in REFUSED,
           "%s: cannot list /proc (other processes) or / (%s, %s)" % (unit, r["list"]["/proc"], r["list"]["/"]))
        if port == 443:
            ok(r["read"]["$CREDENTIALS_DIRECTORY/key.pem"] == "ok",
               "%s: reads its copy of the key in $CREDENTIALS_DIRECTORY" % unit, r["read"])
        bus = r["connect"]["/run/dbus/system_bus_socket"]
        ok(not bus.startswith("talked"), "%s: the system bus does not talk to it (%s)" % (unit, bus))
        priv = r["connect"]["/run/systemd/private"]
        ok(not priv.startswith("talked"), "%s: systemd's private socket does not let it in (%s)" % (unit, priv))
        ok(r["connect"]["/run/httpgate/launch.sock"] == "ok" and r["socket"]["AF_UNIX dgram"] == "ok"
           and r["socket"]["AF_INET6 stream"] == "ok",
           "%s: what it needs stays reachable: the launcher's socket, the journal's kind of socket, TCP" % unit,
           (r["connect"], r["socket"]))
        # IPAddressDeny= is systemd's, enforced only on the unified cgroup
        # hierarchy (Debian 12 boots it; this container has the host's).
        out = r["do"].pop("connect to 10.99.0.1:80", None)
        print("# %s: a connection to 10.99.0.1:80 (not loopback): %s; cgroup2 at /sys/fs/cgroup: %s" % (
            unit, out, c.sh("stat -f -c %T /sys/fs/cgroup", check=False).stdout.strip()))
        for what, v in sorted(r["do"].items()):
            ok(v in REFUSED, "%s: %s is refused (%s)" % (unit, what, v))
        for fam in ("AF_NETLINK", "AF_PACKET", "AF_INET raw", "AF_VSOCK"):
            ok(r["socket"][fam] != "ok", "%s: cannot open a socket of %s (%s)" % (unit, fam, r["socket"][fam]))
    r = c.client("get", "/echo/after-probe")
    r2 = c.client("raw", request("/echo/after-probe").hex(), 443, "localhost")
    ok(r.get("status") == "200" and r2.get("status") == "200",
       "with the drop-ins removed the gate serves again (ports 80 and 443)", (r, r2))


def instance_status(c, pattern, before):
    """/proc status and limits of the one new running instance of pattern."""
    end = time.time() + 10
    while time.time() < end:
        new = [u for u in c.units(pattern) if u not in before and c.unit_prop(u, "ActiveState") == "active"]
        pid = c.unit_prop(new[0], "MainPID") if new else "0"
        if pid != "0":
            st = c.sh("cat /proc/%s/status /proc/%s/limits" % (pid, pid), check=False).stdout
            return {k: (re.search(r"(?m)^%s:\s*(\S+)" % k, st) or [None, None])[1]
                    for k in ("Seccomp", "NoNewPrivs", "CapEff")} | {
                "nproc": (re.search(r"(?m)^Max processes\s+(\S+)", st) or [None, None])[1]}
        time.sleep(0.05)
    return {}


CONFINED_CASES = [
    # what, port, SNI, bytes sent before looking (None: nothing)
    ("waiting for its first byte", 80, "", None),
    ("in the middle of a request head", 80, "", b"GET /echo/x HTTP/1.1\r\nHost: a\r\n"),
    ("after an answer, on a kept-alive connection", 80, "", b"GET /echo/x HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("HTTPS, waiting for the ClientHello", 443, "", None),
    ("HTTPS, after the handshake", 443, "localhost", None),
]


def test_confined(c):
    """The real gate is confined before it reads anything, and stays so."""
    def look(what, port, sni, data, names_unreadable=False):
        pattern = "httpgate-tls@*" if port == 443 else "httpgate@*"
        before = c.units(pattern)
        res = {}
        t = threading.Thread(target=lambda: res.update(c.client("hold_send", port, data.hex() if data else "-", 1,
                                                               sni)))
        t.start()
        st = instance_status(c, pattern, before)
        t.join()
        ok(st.get("Seccomp") == "2" and st.get("NoNewPrivs") == "1" and st.get("CapEff") == "0" * 16
           and st.get("nproc") == "0", "the gate %s is confined (seccomp filter, no new privileges, no "
           "capabilities, no processes)" % what, (st, res))
        return res
    for what, port, sni, data in CONFINED_CASES:
        look(what, port, sni, data)
    c.sh("chmod 000 /etc/httpgate/names")
    try:
        look("with an unreadable names file", 80, "", None)
    finally:
        c.sh("chmod 644 /etc/httpgate/names")
    r = c.client("get", "/echo/after-confined")
    ok(r.get("status") == "200", "and it serves as before", r)


def test_no_landlock(c):
    """A kernel without Landlock (here: a filter that says ENOSYS): the gate
    says so once, not per connection, and serves, with the rest of its
    sandbox."""
    conf = "/etc/systemd/system/httpgate@.service.d/hgtest-nolandlock.conf"
    c.write(conf, "[Service]\nSystemCallFilter=~landlock_create_ruleset landlock_add_rule landlock_restrict_self\n"
                  "SystemCallErrorNumber=ENOSYS\n")
    c.sh("systemctl daemon-reload && rm -f /var/cache/httpgate/landlock-unavailable")
    mark = time.time()
    try:
        got = [c.client("get", "/echo/no-landlock-%d" % i).get("status") for i in range(3)]
        ok(got == ["200"] * 3, "without Landlock the gate still serves", got)
        ents = c.journal_until(lambda e: len(e) >= 1, "-t", "httpgate", "PRIORITY=4", since=mark)
        time.sleep(0.5)
        warn = [text(e.get("MESSAGE", "")) for e in c.journal("-t", "httpgate", since=mark) if "no Landlock" in
                text(e.get("MESSAGE", ""))]
        ok(len(warn) == 1 and "httpgate.units(5)" in warn[0],
           "... and says so once in the journal, for three connections, naming the drop-in's page", (warn, ents[:1]))
    finally:
        c.sh("rm -f %s /var/cache/httpgate/landlock-unavailable && systemctl daemon-reload" % conf, check=False)


# ---- the launcher, called directly -------------------------------------

LAUNCH_CASES = [
    # what, bytes, answer, reason in the journal
    ("a path with ../", b"../../etc/passwd\n", "404", "no such app"),
    ("an absolute path", b"/bin/sh\n", "404", "no such app"),
    ("a name with a blank", b"echo -c reboot\n", "400", "blank"),
    ("$(...) without blanks", b"$(touch${IFS}/tmp/pwned)\n", "404", "no such app"),
    ("$(...) with a blank", b"$(touch /tmp/pwned)\n", "400", "blank"),
    ("backquotes", b"`touch${IFS}/tmp/pwned`\n", "404", "no such app"),
    ("a semicolon", b"echo;reboot\n", "404", "no such app"),
    ("a pipe", b"echo|reboot\n", "404", "no such app"),
    ("a NUL", b"echo\x00../../x\n", "400", "control character"),
    ("a CR", b"echo\r\n", "400", "control character"),
    ("a tab", b"echo\tx\n", "400", "control character"),
    ("a 65-byte name", b"e" * 65 + b"\n", "400", "longer than 64"),
    ("a 100 000-byte name", b"e" * 100000 + b"\n", "400", "longer than 64"),
    ("a unit name", b"httpgate-app-echo.service\n", "404", "no such app"),
    ("an escaped unit name", b"echo\\x2dx\n", "404", "no such app"),
    ("an option", b"--help\n", "404", "no such app"),
    ("a glob", b"*\n", "404", "no such app"),
    ("the default key @ (none here)", b"@\n", "404", "no such app"),
    ("non-ASCII", "\u00e9cho\n".encode(), "404", "no such app"),
    ("an empty name", b"\n", "400", "empty name"),
    ("a name cut off by the caller", b"echo", "400", "connection closed"),
    ("a redirect entry", b"redir\n", "404", "redirect entry"),
    ("an entry whose user is root", b"rootapp\n", "403", "uid or gid 0"),
    ("an entry whose user's group is root (gid 0)", b"gid0app\n", "403", "uid or gid 0"),
]


def test_launcher(c):
    mark = time.time()
    slow = {}
    t = threading.Thread(target=lambda: slow.update(c.client("launch", b"echo".hex(), user="httpgate")))
    t.start()   # a caller that sends no newline: 408 after the launcher's 5 s
    for what, data, want, why in LAUNCH_CASES:
        r = c.client("launch", "-", "shut" if data == b"echo" else "wait", user="httpgate", stdin=data.hex())
        ok(r.get("answer", "").startswith(want + " "), "the launcher answers %s to %s" % (want, what), r)
    r = c.client("launch", b"echo\nrootapp\nUser=root\n".hex(), user="httpgate")
    ok(r.get("answer", "").startswith("200 "), "it starts a names entry it is asked for (echo)", r)
    t.join()
    ok(slow.get("answer", "").startswith("408 "), "a caller that never ends its name gets 408", slow)
    ents = c.journal_until(lambda e: len(e) >= len(LAUNCH_CASES) + 1, "-t", "httpgate-launch",
                           "HTTPGATE_LAUNCH=refused", since=mark)
    msgs = [text(e.get("MESSAGE", "")) for e in ents]
    timeout = [m for m in msgs if "within 5 s" in m]
    msgs = [m for m in msgs if "within 5 s" not in m]
    ok(len(msgs) == len(LAUNCH_CASES) and len(timeout) == 1,
       "each refusal is in the journal (%d of %d, and the timeout)" % (len(msgs), len(LAUNCH_CASES)), msgs)
    for (what, data, want, why), m in zip(LAUNCH_CASES, msgs):
        ok(why in m, "... %s: %s" % (what, m[:100]), why)
    ok(all(len(m) < 400 for m in msgs) and not any("\x00" in m or "\r" in m for m in msgs),
       "refusals are logged bounded and with control characters escaped", [m for m in msgs if len(m) >= 400][:1])
    units = c.units("httpgate-app-*")
    ever = app_units_logged(c, mark)
    ok(units == ["httpgate-app-echo.service"] and ever <= {"httpgate-app-echo.service"},
       "no unit but httpgate-app-echo.service appeared (systemctl list-units --all, and the journal)", (units, ever))
    ok(c.unit_prop("httpgate-app-echo.service", "User") == "hgapp1"
       and "path=/srv/echo/echo.py" in c.unit_prop("httpgate-app-echo.service", "ExecStart"),
       "... with the entry's user and command, whatever followed the name")
    failed = c.units("httpgate-launch@*")
    ok(not [u for u in failed if c.unit_prop(u, "ActiveState") == "failed"], "no launcher instance failed", failed)


# ---- hostile requests -------------------------------------------------------

def request(target, host="hgtest"):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (target, host)).encode("latin-1")


REQUEST_CASES = [
    # what, request bytes, statuses allowed (httpgate(8) DIAGNOSTICS)
    ("/..%2f..%2fetc/x", request("/..%2f..%2fetc/x"), ("404",)),
    ("/../../etc/passwd", request("/../../etc/passwd"), ("404", "400")),
    ("/.%2e/.%2e/etc/passwd", request("/.%2e/.%2e/etc/passwd"), ("404",)),
    ("/$(touch%20/tmp/pwned)/", request("/$(touch%20/tmp/pwned)/"), ("404",)),
    ("/$(touch /tmp/pwned)/ (blanks)", request("/$(touch /tmp/pwned)/"), ("400",)),
    ("/`touch${IFS}/tmp/pwned`/", request("/`touch${IFS}/tmp/pwned`/"), ("404", "400")),
    ("/app;reboot/", request("/app;reboot/"), ("404",)),
    ("/echo;reboot/", request("/echo;reboot/"), ("404",)),
    ("/echo|reboot/", request("/echo|reboot/"), ("404", "400")),
    ("/%00/", request("/%00/"), ("404",)),
    ("/<NUL>/ (raw)", request("/\x00/"), ("400",)),
    ("/echo%0aUser=root/", request("/echo%0aUser=root/"), ("404",)),
    ("/httpgate-app-echo.service/", request("/httpgate-app-echo.service/"), ("404",)),
    ("a 200-byte key", request("/" + "k" * 200 + "/"), ("404",)),
    ("a 5000-byte key", request("/" + "k" * 5000 + "/"), ("404",)),
    ("a 9000-byte key", request("/" + "k" * 9000 + "/"), ("414",)),
    ("/22/ (a port below 1024)", request("/22/"), ("403",)),
    ("/rootapp/ (root's entry)", request("/rootapp/"), ("503",)),
    ("/gid0app/ (gid 0)", request("/gid0app/"), ("503",)),
    ("an absolute URL (routed by its path)", request("http://evil.test/etc/passwd"), ("404",)),
    ("Host: ../../etc", request("/x", host="../../etc"), ("404",)),
    ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: hgtest\r\n\r\n", ("400", "404")),
]


def test_requests(c):
    mark = time.time()
    upper0 = upper_files(c)
    got = []
    for what, data, want in REQUEST_CASES:
        r = c.client("raw", data.hex(), 80)
        got.append(r.get("status"))
        ok(r.get("status") in want, "%s: %s" % (what, r.get("status")), (want, r.get("head", "")[:200]))
    for target in ("/$(touch%20/tmp/pwned)/", "/..%2f..%2fetc/x"):
        r = c.client("raw", request(target).hex(), 443, "localhost")
        got.append(r.get("status"))
        ok(r.get("status") == "404", "over HTTPS %s: %s" % (target, r.get("status")), r.get("head", "")[:200])
    r = c.client("raw", request("/echo/..%2f..%2fetc/x?$(id)").hex(), 80)
    got.append(r.get("status"))
    ok(r.get("status") == "200" and "path=/..%2f..%2fetc/x?$(id)\n" in r.get("body", ""),
       "an app's target goes to the app as it came, not decoded or resolved", r.get("body", "")[:200])
    r = c.client("raw", request("/redir/x").hex(), 80)
    got.append(r.get("status"))
    ok(r.get("status") == "302" and "Location: http://example.org/" in r.get("head", ""),
       "the redirect entry answers 302 with its URL", r.get("head", "")[:200])
    # (by the entries' fields: an instance often exits before journald
    # reads its last entry, which then has no _SYSTEMD_UNIT)
    want = sorted("forwarded" if st == "200" else st for st in got)
    ents = c.journal_until(lambda e: len(statuses(e)) >= len(want), "-t", "httpgate", since=mark)
    ok(statuses(ents) == want, "each answer is in the journal (%d entries for %d requests)" % (
        len(statuses(ents)), len(want)), (statuses(ents), want))
    units = c.units("httpgate-app-*")
    ever = app_units_logged(c, mark)
    ok(units == ["httpgate-app-echo.service"] and ever <= {"httpgate-app-echo.service"},
       "no request made a unit (list-units and the journal: only httpgate-app-echo)", (units, ever))
    # The root file system's changes are all in the overlay's upper
    # directory; the rest is on the container's tmpfs mounts.
    upper = upper_files(c)
    pwned = c.sh("find /tmp /run /dev/shm -xdev -name '*pwned*' 2>/dev/null; true", check=False).stdout.split()
    pwned += [f for f in upper if "pwned" in f]
    ok(not pwned, "no file named by a request was created anywhere", pwned)
    new = sorted(f for f in upper - upper0 if not re.match(r"/(var/log/journal|var/lib/systemd)/", f))
    ok(not new, "nothing on the disk changed but the journal (the overlay's upper layer)", new[:20])
    failed = [u for u in c.units("httpgate*") if c.unit_prop(u, "ActiveState") == "failed"]
    ok(not failed, "no httpgate unit failed", failed)


def app_units_logged(c, since):
    """The httpgate-app-* units the journal speaks of since then: systemd's
    messages about them, the apps' output, the launcher's starts (not its
    refusals, which quote what the caller sent)."""
    names = set()
    for e in c.journal("-u", "httpgate-app-*", since=since):
        names |= {text(e.get(k)) for k in ("UNIT", "_SYSTEMD_UNIT") if k in e}
    for e in c.journal("-t", "httpgate-launch", since=since):
        if e.get("HTTPGATE_LAUNCH") != "refused":
            names |= set(re.findall(r"httpgate-app-\S+\.service", text(e.get("MESSAGE", ""))))
    return names


def statuses(ents):
    return sorted(text(e["HTTPGATE_STATUS"]) for e in ents if "HTTPGATE_STATUS" in e)


def upper_files(c):
    """Every file the container has written to its root (the overlay's upper directory)."""
    up = c.base + "/upper"
    return {os.path.join(d, f)[len(up):] for d, _, fs in os.walk(up) for f in fs}


def test_void(c):
    """The void file of an entry, read by the sandboxed gate (Landlock lets
    it read each entry's DIR/void and nothing else there)."""
    for port, sni in ((80, ""), (443, "localhost")):
        r = c.client("raw", request("/gone/~session").hex(), port, sni)
        ok(r.get("status") == "410" and "hgtest void marker" in r.get("body", ""),
           "port %d: an expired session of an app that cannot start gets 410 with the entry's void file" % port,
           (r.get("status"), r.get("body", "")[:200]))


TESTS = (test_tls, test_tls_dir, test_sandbox, test_confined, test_no_landlock, test_launcher, test_requests, test_void)


if __name__ == "__main__":
    run_tier("tier-51", setup, TESTS, ok)
    done()
