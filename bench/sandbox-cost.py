#!/usr/bin/python3
"""bench/sandbox-cost.py [-n N] [-m MOUNTS] [VARIANT ...]: what the sandbox of
httpgate@.service costs per connection, setting by setting.

Boots this machine's root in a container once (test/lib/nspawn.py, systemd-nspawn --boot
--private-network on an overlay of /, as test/tier-50-systemd.py does),
installs httpgate with `make install DESTDIR=`, and for each variant writes
/etc/systemd/system/httpgate@.service (and httpgate-tls@.service): the
installed unit up to its sandbox, plus the variant's settings. Then
daemon-reload, `systemd-analyze security`, a few checks that the gate still
works (an app started through the launcher, a void file under /home, the
names index in the CacheDirectory, the journal, HTTPS with credentials and
the ticket key), and N connections, 8 at a time, from inside the container.
CPU time from the container's PID 1: its own (setting up and collecting
units) and its reaped children's (each instance from fork to exit, sandbox
set-up included); journald's apart. -m adds MOUNTS tmpfs mounts inside the
container first, to see how the cost follows the number of mounts.

A VARIANT is a name in VARIANTS, or NAME=KEY+KEY-KEY... over the keys of
SET and the names in VARIANTS (-KEY takes one out). Needs root and systemd-nspawn. The container
is torn down (nspawn stopped by PID, overlay unmounted, removed) whatever
happens.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, 'test', 'lib'))
from nspawn import Container  # noqa: E402  (the container the systemd test tiers boot)

SET = {  # key: the lines it adds to [Service]
    'nnp': 'NoNewPrivileges=yes', 'caps': 'CapabilityBoundingSet=\nAmbientCapabilities=',
    'pu': 'PrivateUsers=yes', 'ptmp': 'PrivateTmp=yes', 'pdev': 'PrivateDevices=yes',
    'dpol': 'DevicePolicy=closed', 'psys': 'ProtectSystem=strict', 'phome': 'ProtectHome=read-only',
    'phomey': 'ProtectHome=yes', 'pproc': 'ProtectProc=invisible', 'psub': 'ProcSubset=pid',
    'pkm': 'ProtectKernelModules=yes', 'pkt': 'ProtectKernelTunables=yes', 'pcg': 'ProtectControlGroups=yes',
    'pkl': 'ProtectKernelLogs=yes', 'pclock': 'ProtectClock=yes', 'phost': 'ProtectHostname=yes',
    'raf': 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6', 'rns': 'RestrictNamespaces=yes',
    'rrt': 'RestrictRealtime=yes', 'rsuid': 'RestrictSUIDSGID=yes', 'lp': 'LockPersonality=yes',
    'mdwe': 'MemoryDenyWriteExecute=yes', 'ripc': 'RemoveIPC=yes', 'umask': 'UMask=0077',
    'arch': 'SystemCallArchitectures=native',
    'scf': 'SystemCallFilter=@system-service\nSystemCallFilter=~@privileged @resources\nSystemCallErrorNumber=EPERM',
    'scfdeny': 'SystemCallFilter=~@clock @cpu-emulation @debug @module @mount @obsolete @privileged @raw-io @reboot '
               '@resources @swap\nSystemCallErrorNumber=EPERM',
    'trun': 'TemporaryFileSystem=/run:ro\nBindReadOnlyPaths=/run/httpgate /run/systemd/journal',
    'nocreds': '',  # httpgate-tls@: the key read from /etc/httpgate (group httpgate), no LoadCredential=
    'inacc': 'InaccessiblePaths=-/run/dbus/system_bus_socket -/run/lock -/dev/shm -/dev/mqueue',
    'rodev': 'ReadOnlyPaths=/dev', 'inbus': 'InaccessiblePaths=-/run/dbus/system_bus_socket',
    'tasks': 'TasksMax=16', 'ipa': 'IPAddressDeny=any\nIPAddressAllow=localhost', 'pmnt': 'PrivateMounts=yes',
    'pipc': 'PrivateIPC=yes',
    # Not the sandbox: what else each instance costs.
    'gatesb': '',     # ExecStart= with --sandbox: the gate confines itself (src/sandbox.c)
    'js': '',         # a journal stream per instance (the units have StandardError=null)
    'nodeps': '[Unit]\nDefaultDependencies=no\nConflicts=shutdown.target\nBefore=shutdown.target\n[Service]',
    'nocollect': '',  # without CollectMode=inactive-or-failed
}
BEFORE = ('nnp caps pu ptmp pdev dpol psys phome inacc pproc psub pkm pclock phost raf rns rrt rsuid lp mdwe ripc '
          'umask arch scf tasks').split()  # the units before this script
NOMOUNT = 'nnp caps pu dpol pclock phost raf rns rrt rsuid lp mdwe ripc umask arch scf tasks ipa'.split()
NAMESPACES = [k for k in NOMOUNT if k != 'phost'] + 'pmnt psys phome ptmp pkm rodev inbus'.split()  # tried next
GATE = 'gatesb nnp caps umask tasks ipa'.split()  # the units now: the gate's own sandbox, and what costs nothing
VARIANTS = {'bare': [], 'before': BEFORE, 'nomount': NOMOUNT, 'namespaces': NAMESPACES, 'gate': GATE}
for k in SET:
    VARIANTS['+' + k] = [k]
    if k not in GATE:
        VARIANTS['gate+' + k] = GATE + [k]
for k in GATE:
    VARIANTS['gate-' + k] = [x for x in GATE if x != k]
CHEAP = 'dpol ipa ripc raf arch rns lp mdwe rrt rsuid pclock js nodeps nocollect'.split()
DEFAULT = ['bare', 'gate', 'before', 'namespaces'] + ['gate-' + k for k in GATE] + ['gate+' + k for k in CHEAP]

NAMES = ('hello 4001 hgapp1 /srv/hello ^ ./server.py\n'
         'gone 4002 hgapp1 /home/hgvoid/gone ^ ./nothing\n')
SERVER = r'''#!/usr/bin/python3
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        b = b"hello\n"
        self.send_response(200); self.send_header("Content-Length", "6"); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''
CLIENT = r'''import socket, ssl, sys, time, concurrent.futures as cf
n, c, path, tls = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "tls"
ctx = ssl.create_default_context(cafile="/etc/httpgate/cert.pem") if tls else None
def one(_):
    try:
        s = socket.create_connection(("127.0.0.1", 443 if tls else 80), timeout=30)
        if tls:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path).encode())
        d = b""
        while True:
            x = s.recv(65536)
            if not x:
                break
            d += x
        s.close()
        return d.decode("latin-1")
    except (OSError, ssl.SSLError) as e:
        return type(e).__name__
t = time.time()
with cf.ThreadPoolExecutor(c) as ex:
    r = list(ex.map(one, range(n)))
print("%.3f" % (time.time() - t))
for x in r[:1] if n == 1 else [y for y in r if not y.startswith("HTTP/1.1 200")][:3]:
    print(x)
'''
# Holds K HTTPS connections open, idle after one request, as browsers do.
HOLD = r'''import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile="/etc/httpgate/cert.pem")
held = []
for i in range(int(sys.argv[1])):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", 443)), server_hostname="localhost")
    s.sendall(b"GET /hello/hold HTTP/1.1\r\nHost: localhost\r\n\r\n")
    s.recv(4096)
    held.append(s)
print(len(held), flush=True)
time.sleep(3600)
'''
MSGID_END = '9e1f4c3b2a7d4e8f8b6c5a4d3e2f1a07'  # src/log.c
TARGET = '[Unit]\nRequires=basic.target\nAfter=basic.target\nAllowIsolate=yes\n'


def log(*a):
    print('#', *a, file=sys.stderr, flush=True)


class Box(Container):
    """test/lib/nspawn.py's container, with what the variants need inside."""

    def __init__(self, unified):
        super().__init__('httpgate-sbx', parents=('/var/tmp',), target=TARGET,
                         env=dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY='1' if unified else '0'))
        self.holders = []

    def before_boot(self, _):
        self.write('/srv/hello/server.py', SERVER, 0o755)
        self.write('/opt/sbx/client.py', CLIENT)
        self.write('/opt/sbx/hold.py', HOLD)
        # over 64 KiB, so that the gate keeps an index in its CacheDirectory
        self.write('/etc/httpgate/names', NAMES + ''.join('pad%05d %d nobody / ^ ./x\n' % (i, 10000 + i)
                                                          for i in range(3000)))

    def boot(self):
        why = self.start(before_boot=self.before_boot)
        if why:
            raise RuntimeError(why)
        self.sh('useradd hgapp1 && mkdir -p /home/hgvoid/gone && echo void-marker >/home/hgvoid/gone/void'
                ' && chmod 755 /home/hgvoid && chown -R hgapp1: /srv/hello && ip link set lo up'
                ' && ip addr add 10.99.0.1/32 dev lo'  # a client that is not on loopback
                ' && cd /etc/httpgate && certtool --generate-privkey --key-type=ecdsa --outfile key.pem 2>/dev/null'
                ' && chmod 600 key.pem && printf "cn=localhost\\ndns_name=localhost\\ntls_www_server\\n" >/tmp/t'
                ' && certtool --generate-self-signed --load-privkey key.pem --template /tmp/t --outfile cert.pem'
                ' 2>/dev/null && systemctl start httpgate.socket httpgate-tls.socket')

    def unhold(self):
        for p in self.holders:
            os.killpg(p.pid, signal.SIGKILL)  # its own session: nsenter and the client in the container
            p.wait()
        self.holders = []

    def stop(self):
        self.unhold()
        super().stop()


def ticks(pid):
    f = open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()
    return int(f[11]) + int(f[12]), int(f[13]) + int(f[14])


def unit_text(template, keys):
    text = open('%s/units/%s.in' % (TOP, template)).read().replace('@BINDIR@', '/usr/bin')
    text = text[:text.index('\n# The sandbox:')] + '\n'
    if 'nocreds' in keys:
        text = re.sub(r'(?m)^LoadCredential=.*\n', '', text).replace('%d/', '/etc/httpgate/')
    text = text.replace(' --sandbox', '')
    if 'gatesb' in keys:
        text = re.sub(r'(?m)^(ExecStart=\S+)', r'\1 --sandbox', text)
    if 'js' in keys:
        text = re.sub(r'(?m)^Standard(Output|Error)=null\n', '', text)
    if 'nocollect' in keys:
        text = re.sub(r'(?m)^CollectMode=.*\n', '', text)
    return text + ''.join(SET[k] + '\n' for k in keys)


def setup_variant(b, keys):
    for t in ('httpgate@.service', 'httpgate-tls@.service'):
        b.write('/etc/systemd/system/' + t, unit_text(t, keys))
    b.sh('cd /etc/httpgate && chgrp %s key.pem && chmod %s key.pem && systemctl daemon-reload'
          % (('httpgate', '640') if 'nocreds' in keys else ('root', '600')))
    r = b.sh('systemd-analyze security --no-pager httpgate@.service', check=False)
    m = re.search(r'Overall exposure level for \S+: (\d+\.\d+)', r.stdout)
    return float(m.group(1)) if m else float('nan')


def client(b, n, path, tls=False, conc=8):
    out = b.sh('python3 /opt/sbx/client.py %d %d %s %s' % (n, conc, path, 'tls' if tls else 'plain')).stdout
    lines = out.split('\n', 1)
    return float(lines[0]), lines[1] if len(lines) > 1 else ''


def checks(b):
    bad = []
    b.sh('systemctl stop httpgate-app-hello.service; rm -f /var/cache/httpgate/*.idx /var/lib/httpgate/*',
          check=False)
    _, out = client(b, 1, '/hello/chk1')
    if not out.startswith('HTTP/1.1 200') or b.sh('systemctl is-active httpgate-app-hello.service',
                                                    check=False).stdout.strip() != 'active':
        bad.append('launch')
    if not b.sh('ls /var/cache/httpgate/', check=False).stdout.strip():
        bad.append('cache')
    # IPAddressAllow=localhost must not reach the client's connection (it is systemd's socket)
    if 'hello' not in b.sh('curl -sS --interface 10.99.0.1 http://10.99.0.1/hello/remote', check=False).stdout:
        bad.append('remote')
    _, out = client(b, 1, '/gone/~x')
    if 'void-marker' not in out:
        bad.append('void')
    _, out = client(b, 1, '/hello/chk2', tls=True)
    if not out.startswith('HTTP/1.1 200'):
        bad.append('tls')
    if not b.sh('ls /var/lib/httpgate/', check=False).stdout.strip():
        bad.append('ticketkey')
    time.sleep(0.3)
    if '/hello/chk1' not in b.sh('journalctl -t httpgate -o json HTTPGATE_TARGET=/hello/chk1',
                                  check=False).stdout:
        bad.append('journal')
    return ' '.join(bad) or 'ok'


def idle(b, held=0):
    end = time.time() + 60
    while time.time() < end:
        kids = open('/proc/%d/task/%d/children' % (b.leader, b.leader)).read().split()
        if sum(open('/proc/%s/comm' % k).read().startswith('httpgate') for k in kids if os.path.exists(
                '/proc/%s/comm' % k)) <= held:
            break
        time.sleep(0.1)
    time.sleep(1.0)  # PID 1 collects the last units


def hold(b, k):
    if not k:
        return None
    p = subprocess.Popen(['nsenter', '-t', str(b.leader), '-a', 'python3', '/opt/sbx/hold.py', str(k)],
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
    b.holders.append(p)
    p.stdout.readline()
    return p


PERF = {}  # --perf: where PID 1's time goes (perf record, cpu-clock samples)
PERF_DATA = '/tmp/httpgate-sandbox-cost-perf.data'  # the last variant's, for perf report


def measure(b, n, tls, held=0):
    kids = open('/proc/%d/task/%d/children' % (b.leader, b.leader)).read().split()
    daemons = [int(k) for k in kids if open('/proc/%s/comm' % k).read().strip() in ('systemd-journal', 'dbus-daemon')]
    idle(b, held)
    t0, d0 = ticks(b.leader), sum(ticks(p)[0] for p in daemons)
    since = time.time()
    rec = None
    if PERF.get('on') and not tls:
        rec = subprocess.Popen(['perf', 'record', '-q', '-e', 'cpu-clock', '-F', '4000', '-g', '-p', str(b.leader),
                                '-o', PERF_DATA], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    sec, errs = client(b, n, '/hello/m', tls)
    if rec:
        rec.send_signal(signal.SIGINT)
        rec.wait(30)
        rep = subprocess.run(['perf', 'report', '-q', '-i', PERF_DATA, '--stdio', '--no-children',
                              '--sort', 'dso', '-g', 'none'],
                             capture_output=True, text=True)
        PERF['report'] = rep.stdout
    idle(b, held)
    t1, d1 = ticks(b.leader), sum(ticks(p)[0] for p in daemons)
    us = 1e6 / os.sysconf('SC_CLK_TCK') / n
    # The instance's CPU, split by the gate's own end-of-connection entry:
    # before main (the forked child's set-up, exec, loading) and after.
    ends = [json.loads(x) for x in b.sh('journalctl -o json --since=@%.3f MESSAGE_ID=%s' % (since, MSGID_END),
                                         check=False).stdout.splitlines() if x.startswith('{')]
    ends = [e for e in ends if 'HTTPGATE_CPU_USEC' in e]
    split = {k: sum(int(e['HTTPGATE_CPU_%sUSEC' % f]) for e in ends) / len(ends) if ends else float('nan')
             for k, f in (('pre', 'START_'), ('gate', ''))}
    return {'pid1': (t1[0] - t0[0]) * us, 'inst': (t1[1] - t0[1]) * us, 'daemons': (d1 - d0) * us,
            'rate': n / sec, 'errs': errs.strip()[:100], 'pre': split['pre'], 'gate': split['gate']}


def med(v):
    v = sorted(v)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2


def parse(spec):
    if spec in VARIANTS:
        return spec, VARIANTS[spec]
    name, _, keys = spec.partition('=')
    out = []
    for op, k in re.findall(r'([+-]?)([\w.]+)', keys):
        if op == '-':
            out = [x for x in out if x != k]
        elif k in VARIANTS:
            out += VARIANTS[k]
        elif k in SET:
            out.append(k)
        else:
            raise SystemExit('unknown key ' + k)
    return name, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('-n', type=int, default=300)
    ap.add_argument('-r', '--rounds', type=int, default=1)
    ap.add_argument('--hold', type=int, default=0, help='HTTPS connections held open while measuring')
    ap.add_argument('-m', '--mounts', type=int, default=0)
    ap.add_argument('--tls', action='store_true', help='measure HTTPS connections too')
    ap.add_argument('--score', action='store_true', help='only rate each variant')
    ap.add_argument('--exec', action='append', default=[], help='a shell command to run in the container first')
    ap.add_argument('--unified', action='store_true', help='the container on cgroup v2 only, as Debian 12 boots')
    ap.add_argument('--perf', action='store_true', help="perf record PID 1 during each variant's plain run, print "
                    "where its time goes (symbols above 1.5%%)")
    ap.add_argument('variants', nargs='*')
    a = ap.parse_args()
    variants = [parse(v) for v in (a.variants or DEFAULT)]
    b = Box(a.unified)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        b.boot()
        if a.mounts:
            b.sh('for i in $(seq %d); do mkdir -p /mnt/sbx$i && mount -t tmpfs sbx /mnt/sbx$i; done' % a.mounts)
        for cmd in a.exec:
            r = b.sh(cmd, check=False)
            log('$', cmd, '\n' + r.stdout + r.stderr)
        log('mounts in the container:', b.sh('wc -l </proc/1/mountinfo').stdout.strip())
        if a.score:
            for name, keys in variants:
                print('| %s | %.1f | %s |' % (name, setup_variant(b, keys), ' '.join(keys)), flush=True)
                if os.environ.get('SBX_DETAIL'):
                    print(b.sh('systemd-analyze security --no-pager httpgate@.service | grep "✗"', check=False).stdout)
            return
        res = {name: {'score': 0, 'ok': '', 'http': [], 'tls': []} for name, _ in variants}
        for rnd in range(a.rounds):  # rounds rotate the order: drift in the machine's load hits all alike
            for name, keys in variants[rnd % len(variants):] + variants[:rnd % len(variants)]:
                r = res[name]
                r['score'] = setup_variant(b, keys)
                if rnd == 0:
                    r['ok'] = checks(b)
                client(b, 20, '/hello/warm')
                hold(b, a.hold)
                PERF['on'] = a.perf
                r['http'].append(measure(b, a.n, False, a.hold))
                if a.perf:
                    print('perf, PID 1, variant %s:\n%s' % (name, PERF.get('report', '')), file=sys.stderr, flush=True)
                if a.tls:
                    r['tls'].append(measure(b, a.n, True, a.hold))
                b.unhold()
                log('round %d %s: %.0f µs' % (rnd + 1, name, r['http'][-1]['pid1'] + r['http'][-1]['inst']))
        print('| variant | score | works | µs CPU/conn, PID 1 + instance (range) | PID 1 | instance | '
              'of it before exec | of it the gate | journald, D-Bus | conn/s |%s' % (
                  ' HTTPS µs CPU/conn | HTTPS conn/s |' if a.tls else ''))
        print('| --- ' * (12 if a.tls else 10) + '|')
        for name, _ in variants:
            r = res[name]
            tot = sorted(m['pid1'] + m['inst'] for m in r['http'])
            errs = ' '.join(m['errs'] for m in r['http'] if m['errs'])[:100]
            row = '| %s | %.1f | %s | %.0f (%.0f–%.0f) | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |' % (
                name, r['score'], r['ok'] + (' ' + errs if errs else ''), med(tot), tot[0], tot[-1],
                med([m['pid1'] for m in r['http']]), med([m['inst'] for m in r['http']]),
                med([m['pre'] for m in r['http']]), med([m['gate'] for m in r['http']]),
                med([m['daemons'] for m in r['http']]), med([m['rate'] for m in r['http']]))
            if a.tls:
                row += ' %.0f | %.0f |' % (med([m['pid1'] + m['inst'] for m in r['tls']]),
                                         med([m['rate'] for m in r['tls']]))
            print(row, flush=True)
    finally:
        b.stop()


if __name__ == '__main__':
    main()
