#!/usr/bin/python3
"""bench/run.py: `make bench`. httpgate against its peers, on loopback only.

Outside: checks the Debian packages, makes a temp dir and a memory cgroup,
then runs itself again inside `unshare --net --pid --fork --mount-proc`, so
that every server it starts (nginx, httpGate, the activators) can only listen
on the private loopback and dies with the namespace; each one is still
stopped by its PID. Then the real-systemd row (bench/nspawn.py, a booted
container with its own private network). Prints the tables and writes them
to bench/results.md; raw numbers go to bench/results-raw/.

BENCH_QUICK=1: one short run per cell (a smoke test, figures are rough).
BENCH_SYSTEMD=0: leave out the real-systemd row.
BENCH_ONLY=plain,names,tls,app,memory: only these phases (for working on one).
BENCH_BASELINE=REV: one row more, httpgate as built from git revision REV
(make bench builds it into build/bench/baseline/), measured in the same run:
a change's before and after, side by side.
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, 'build', 'bench')
QUICK = os.environ.get('BENCH_QUICK') == '1'
BASELINE = os.environ.get('BENCH_BASELINE', '')
BASELINE_GATE = os.path.join(BIN, 'baseline', 'httpgate')
# bench/sandbox-cost.py's variants in make bench: no sandbox, the units' now,
# the namespace sandboxes they had before, and what each part adds or saves.
SANDBOX_VARIANTS = ['bare', 'gate', 'before', 'namespaces', 'gate-gatesb', 'gate+js', 'gate+nodeps',
                    'gate+nocollect', 'gate-ipa', 'gate+raf', '+pu', '+ptmp', '+psys', '+scf']
RUNS = 1 if QUICK else 3            # wrk cells: median of RUNS
SECS = 1 if QUICK else 5            # seconds per wrk cell
BULK_RUNS = 1 if QUICK else 5       # 100 MB downloads per row
APP_RUNS = 2 if QUICK else 5        # app starts per gate
MEM_CONNS = 10 if QUICK else 50     # held connections for the system-wide figure
CONNS = 32                          # wrk connections
TLS_WORKERS = 8
TLS_LINKS = (('glibc', 18446), ('shared', 18447))  # httpgate-tls linked otherwise (Makefile, TLS_LINK)
BIG_MB = 100

BACKEND = 18080
HTTPGATE = '/usr/lib/picolisp/bin/httpGate'
PROXYD = '/lib/systemd/systemd-socket-proxyd'
PKGS = ['wrk', 'nginx-light', 'picolisp', 'systemd', 'systemd-container', 'musl-tools', 'gnutls-bin', 'curl',
        'iproute2', 'util-linux', 'libgnutls28-dev', 'strace']


def log(*a):
    print('bench:', *a, file=sys.stderr, flush=True)


def fmt_num(x):
    if x is None:
        return '—'
    if x >= 100:
        return f'{x:,.0f}'.replace(',', '\u202f')
    if x >= 10:
        return f'{x:.1f}'
    return f'{x:.2f}'


class Stat:
    """Several runs of one figure: median and spread (half the range, % of the median)."""

    def __init__(self, values):
        self.values = [v for v in values if v is not None]

    @property
    def med(self):
        return statistics.median(self.values) if self.values else None

    def cell(self):
        m = self.med
        if m is None:
            return '—'
        if len(self.values) < 2 or m == 0:
            return fmt_num(m)
        spread = (max(self.values) - min(self.values)) / 2 / m * 100
        return f'{fmt_num(m)} ±{spread:.0f}%'


# ---------------------------------------------------------------- outside


def ensure_packages():
    missing = [p for p in PKGS if subprocess.run(['dpkg-query', '-W', '-f=${Status}', p], capture_output=True,
                                                 text=True).stdout.find('ok installed') < 0]
    if not missing:
        return
    log('installing', ' '.join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    # The bench runs its own nginx instances: Debian's package must not start
    # (or enable) a system nginx on port 80 here, nor in booted containers.
    policy, own_policy = '/usr/sbin/policy-rc.d', False
    if 'nginx-light' in missing and not os.path.exists(policy):
        with open(policy, 'w') as f:
            f.write('#!/bin/sh\n# written by httpgate make bench while it installs nginx\nexit 101\n')
        os.chmod(policy, 0o755)
        own_policy = True
    try:
        subprocess.run(['apt-get', 'update', '-q'], env=env, stdout=subprocess.DEVNULL, check=False)
        subprocess.run(['apt-get', 'install', '-y', '-q', '--no-install-recommends'] + missing, env=env,
                       stdout=subprocess.DEVNULL, check=True)
        if 'nginx-light' in missing:
            subprocess.run(['systemctl', 'disable', '--quiet', 'nginx.service'], capture_output=True)
    finally:
        if own_policy:
            os.unlink(policy)


def memory_cgroup_root():
    """Our own memory cgroup (v1 or v2), where per-row cgroups go, or None."""
    try:
        for line in open('/proc/self/cgroup'):
            _, ctrl, path = line.rstrip('\n').split(':', 2)
            if 'memory' in ctrl.split(','):
                base = '/sys/fs/cgroup/memory' + path
                if os.path.exists(base + '/memory.usage_in_bytes'):
                    return base
        for line in open('/proc/self/cgroup'):
            if line.startswith('0::'):
                base = '/sys/fs/cgroup' + line.rstrip('\n')[3:]
                if os.path.exists(base + '/cgroup.controllers') and 'memory' in open(
                        base + '/cgroup.subtree_control').read():
                    return base
    except OSError:
        pass
    return None


def cpu_cgroup_root():
    """Our own cgroup that counts CPU time: cpuacct (v1) or the unified one (v2)."""
    try:
        for line in open('/proc/self/cgroup'):
            _, ctrl, path = line.rstrip('\n').split(':', 2)
            if 'cpuacct' in ctrl.split(','):
                base = '/sys/fs/cgroup/cpuacct' + path
                if os.path.exists(base + '/cpuacct.usage'):
                    return base.rstrip('/')
            if ctrl == '' and line.startswith('0::'):
                base = '/sys/fs/cgroup' + path
                if os.path.exists(base + '/cpu.stat') and os.path.exists(base + '/cgroup.controllers'):
                    v2 = base.rstrip('/')
        return locals().get('v2')
    except OSError:
        return None


def make_cgroups(tag):
    """A memory and a CPU cgroup of our own (one on cgroup v2), or None."""
    tops = []
    for base in (memory_cgroup_root(), cpu_cgroup_root()):
        if not base or any(t.startswith(base + '/') for t in tops):
            continue
        top = f'{base}/{tag}'
        try:
            os.mkdir(top)
            tops.append(top)
        except OSError as e:
            log('no cgroup under', base, e)
    return tops


def remove_cgroups(top):
    if not top or not os.path.isdir(top):
        return
    for d, subdirs, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
        for _ in range(50):
            try:
                os.rmdir(d)
                break
            except OSError:
                time.sleep(0.1)


def outer():
    if os.geteuid() != 0:
        sys.exit('bench: needs root (network namespace, nginx, httpGate)')
    ensure_packages()
    for b in ('httpgate', 'httpgate-tls', 'build/bench/relay-glibc', 'build/bench/tlsload'):
        if not os.access(os.path.join(ROOT, b), os.X_OK):
            sys.exit(f'bench: {b} is missing: run `make bench`')
    tmp = tempfile.mkdtemp(prefix='httpgate-bench.')
    os.chmod(tmp, 0o755)
    cgtops = make_cgroups(f'httpgate-bench-{os.getpid()}')
    child = None

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    results = {}
    try:
        env = dict(os.environ, HTTPGATE_BENCH_TMP=tmp, HTTPGATE_BENCH_CG=':'.join(cgtops))
        child = subprocess.Popen(['unshare', '--net', '--pid', '--fork', '--mount-proc', '--kill-child',
                                  sys.executable, os.path.abspath(__file__), '--inner'], env=env)
        child.wait()
        if child.returncode != 0:
            sys.exit(f'bench: the namespace run failed ({child.returncode})')
        results = json.load(open(os.path.join(tmp, 'results.json')))
        if os.environ.get('BENCH_SYSTEMD', '1') != '0':
            try:
                sysres = subprocess.run([sys.executable, os.path.join(HERE, 'nspawn.py'), tmp],
                                        stdout=subprocess.PIPE, text=True, timeout=600)
                if sysres.returncode == 0 and sysres.stdout.strip():
                    results['systemd'] = json.loads(sysres.stdout)
                else:
                    results['systemd_error'] = f'bench/nspawn.py exited {sysres.returncode}'
            except (subprocess.TimeoutExpired, ValueError) as e:
                results['systemd_error'] = str(e)
            # Where a connection's CPU goes under real systemd, setting by
            # setting (bench/sandbox-cost.py, its own container).
            try:
                sb = subprocess.run([sys.executable, os.path.join(HERE, 'sandbox-cost.py'), '--tls', '-n',
                                     '100' if QUICK else '300', '-r', '1' if QUICK else '2'] + SANDBOX_VARIANTS,
                                    stdout=subprocess.PIPE, text=True, timeout=1800)
                results['sandbox_table'] = sb.stdout if sb.returncode == 0 else ''
                if sb.returncode != 0:
                    results['sandbox_error'] = f'bench/sandbox-cost.py exited {sb.returncode}'
            except subprocess.TimeoutExpired as e:
                results['sandbox_error'] = str(e)
    except KeyboardInterrupt:
        log('interrupted')
        if child and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        raise SystemExit(130)
    finally:
        if child and child.poll() is None:
            child.kill()
            child.wait()
        for top in cgtops:
            remove_cgroups(top)
        raw = os.path.join(HERE, 'results-raw')
        os.makedirs(raw, exist_ok=True)
        for f in os.listdir(tmp):
            if f.endswith('.json') or f.endswith('.txt'):
                shutil.copy(os.path.join(tmp, f), raw)
        shutil.rmtree(tmp, ignore_errors=True)
    text = report(results)
    print(text)
    with open(os.path.join(HERE, 'results.md'), 'w') as f:
        f.write(text)
    with open(os.path.join(HERE, 'results-raw', 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)


# ---------------------------------------------------------------- inside


class Servers:
    """Everything started inside the namespace, stopped by PID in reverse order."""

    def __init__(self, tmp, cgtops):
        self.tmp, self.cgtops = tmp, cgtops
        self.procs = []  # (name, pid)

    def cgroups(self, name):
        out = []
        for top in self.cgtops:
            d = f'{top}/{name}'
            os.makedirs(d, exist_ok=True)
            out.append(d)
        return out

    def cgroup(self, name):
        """The row's memory cgroup."""
        for d in self.cgroups(name):
            if os.path.exists(d + '/memory.usage_in_bytes') or os.path.exists(d + '/memory.current'):
                return d
        return None

    def cpu_us(self, name):
        """CPU time of everything the row ran, the exited processes included."""
        for d in self.cgroups(name):
            try:
                return int(open(d + '/cpuacct.usage').read()) / 1000
            except OSError:
                pass
            try:
                for line in open(d + '/cpu.stat'):
                    if line.startswith('usage_usec'):
                        return float(line.split()[1])
            except OSError:
                pass
        return None

    def start(self, name, argv, env=None, cwd=None):
        """Start argv in its own memory cgroup, output to TMP/name.log."""
        wrap = cg_wrap(self.cgroups(name)) + argv
        out = open(os.path.join(self.tmp, name + '.log'), 'ab')
        p = subprocess.Popen(wrap, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                             cwd=cwd or self.tmp, start_new_session=True)
        self.procs.append((name, p.pid, p))
        return p

    def pid_of(self, name):
        """The last process started or adopted under this name (a daemon's, not its starter's)."""
        pids = [pid for n, pid, _ in self.procs if n == name]
        return pids[-1] if pids else None

    def adopt(self, name, pid):
        self.procs.append((name, pid, None))

    def stop_all(self):
        for name, pid, p in reversed(self.procs):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.time() + 5
        for name, pid, p in reversed(self.procs):
            while time.time() < deadline and alive(pid):
                reap()
                time.sleep(0.05)
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.procs = []


def cg_wrap(dirs):
    """argv prefix: move into the cgroups DIRS (colon-separated), then exec the rest."""
    return ['/bin/sh', '-c', 'IFS=:; for d in $1; do echo $$ > "$d/cgroup.procs"; done; shift; exec "$@"', 'sh',
            ':'.join(dirs)]


def alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def reap():
    """We are PID 1 of the namespace: collect orphans (daemons, started apps)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wait_port(port, host='127.0.0.1', timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def port_closed(port):
    for host in ('127.0.0.1', '::1'):
        try:
            socket.create_connection((host, port), timeout=1).close()
            return False
        except OSError:
            pass
    return True


def http_get(port, path, host='127.0.0.1', keep=False, timeout=10):
    """One GET on a fresh connection; returns (status, body, socket if keep)."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(f'GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: {"keep-alive" if keep else "close"}\r\n\r\n'
              .encode())
    buf = b''
    while b'\r\n\r\n' not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    head, _, body = buf.partition(b'\r\n\r\n')
    status = int(head.split(b' ', 2)[1]) if head.startswith(b'HTTP/') else 0
    m = re.search(rb'(?im)^content-length:\s*(\d+)', head)
    want = int(m.group(1)) if m else None
    while (want is None or len(body) < want):
        d = s.recv(65536)
        if not d:
            break
        body += d
    if keep:
        return status, body, s
    s.close()
    return status, body, None


def cpu_ticks(pid):
    """(own utime+stime, reaped children's cutime+cstime) in clock ticks."""
    try:
        f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
        return int(f[11]) + int(f[12]), int(f[13]) + int(f[14])
    except (OSError, IndexError, TypeError):
        return None


def pss_kib(pid):
    try:
        for line in open(f'/proc/{pid}/smaps_rollup'):
            if line.startswith('Pss:'):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cg_pids(cg):
    try:
        return [int(x) for x in open(cg + '/cgroup.procs').read().split()]
    except OSError:
        return []


def cg_usage(cg):
    for f in ('memory.usage_in_bytes', 'memory.current'):
        try:
            return int(open(f'{cg}/{f}').read())
        except OSError:
            pass
    return None


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def parse_time_ms(s):
    m = re.match(r'([\d.]+)(us|ms|s|m)$', s)
    if not m:
        return None
    v = float(m.group(1))
    return v * {'us': 1e-3, 'ms': 1, 's': 1e3, 'm': 60e3}[m.group(2)]


def wrk(port, path, close, secs=SECS, conns=CONNS):
    argv = ['wrk', '-t2', f'-c{conns}', f'-d{secs}s', '--timeout', '10s', '--latency']
    if close:
        argv += ['-H', 'Connection: close']
    argv.append(f'http://127.0.0.1:{port}{path}')
    r = run(argv, timeout=secs + 60)
    out = r.stdout
    res = {'rps': None, 'p50': None, 'p99': None, 'errors': 0, 'non2xx': 0, 'requests': 0}
    m = re.search(r'Requests/sec:\s*([\d.]+)', out)
    if m:
        res['rps'] = float(m.group(1))
    for pct, key in (('50%', 'p50'), ('99%', 'p99')):
        m = re.search(rf'^\s*{re.escape(pct)}\s+(\S+)', out, re.M)
        if m:
            res[key] = parse_time_ms(m.group(1))
    m = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)', out)
    if m:
        res['errors'] = sum(int(x) for x in m.groups())
    m = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    if m:
        res['non2xx'] = int(m.group(1))
    m = re.search(r'(\d+) requests in', out)
    if m:
        res['requests'] = int(m.group(1))
    return res


def curl_speed(url, tls=False):
    argv = ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code} %{speed_download} %{size_download}']
    if tls:
        argv.append('-k')
    r = run(argv + [url], timeout=120)
    try:
        code, speed, size = r.stdout.split()
        if code == '200' and int(float(size)) == BIG_MB * 1000 * 1000:
            return float(speed) / 1e6
    except ValueError:
        pass
    return None


PHASES = ('exec', 'init', 'credentials', 'handshake', 'gate')


def instance_phases(path, offset):
    """The CPU phases of each instance that ended in the gate's log after offset
    (its stderr line: "cpu=exec:E,init:I,gate:G,credentials:C,handshake:H", µs)."""
    with open(path, 'rb') as f:
        f.seek(offset)
        text = f.read().decode('utf-8', 'replace')
    out = []
    for m in re.finditer(r' cpu=(\S+) end=', text):
        d = {k: int(v) for k, v in re.findall(r'(\w+):(\d+)', m.group(1))}
        if 'handshake' in d:
            out.append(d)
    return out


def loader_statistics():
    """What the dynamic loader does for each link of httpgate-tls (LD_DEBUG=statistics, ldd)."""
    res = {}
    for link in ('musl',) + tuple(l for l, _ in TLS_LINKS):
        path = os.path.join(ROOT, 'httpgate-tls') if link == 'musl' else os.path.join(BIN, f'httpgate-tls-{link}')
        libs = run(['ldd', path]).stdout
        st = run([path, '--help'], env=dict(os.environ, LD_DEBUG='statistics')).stderr
        num = lambda pat: (lambda m: int(m.group(1).replace(',', '')) if m else 0)(re.search(pat, st))
        res[link] = {'libs': 0 if 'not a dynamic' in libs or 'statically' in libs else
                     len([l for l in libs.splitlines() if '=>' in l or 'ld-linux' in l]),
                     'relocations': num(r'number of relocations:\s*([\d,]+)'),
                     'relative': num(r'number of relative relocations:\s*([\d,]+)'),
                     'cycles': num(r'total startup time in dynamic loader:\s*([\d,]+)'),
                     'bytes': os.path.getsize(path)}
    return res


def settle(seconds=0.5):
    reap()
    time.sleep(seconds)
    reap()


class Bench:
    def __init__(self, tmp, cgtops):
        self.tmp = tmp
        self.sv = Servers(tmp, cgtops)
        self.res = {'env': {}, 'rows': {}, 'names': {}, 'tls': {}, 'app': {}, 'notes': []}
        self.rows = []  # (key, label, port, cgroup name)

    def path(self, *p):
        return os.path.join(self.tmp, *p)

    # -------------------------------------------------------- setup
    def files(self):
        www = self.path('www')
        os.makedirs(www)
        with open(os.path.join(www, 'small.html'), 'w') as f:
            f.write('<!doctype html><title>small</title>' + 'x' * 990 + '\n')
        chunk = os.urandom(1 << 20)
        with open(os.path.join(www, 'big.bin'), 'wb') as f:
            for _ in range(BIG_MB):
                f.write(chunk[:1000 * 1000])
        for d in ('cache', 'state', 'run', 'nginx-tmp'):
            os.makedirs(self.path(d))
        os.chmod(self.path('state'), 0o700)
        # the TLS certificate, made by certtool (ECDSA P-256, as certbot makes by default)
        tls = self.path('tls')
        os.makedirs(tls)
        with open(os.path.join(tls, 'template'), 'w') as f:
            f.write('cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\nexpiration_days = 30\n'
                    'tls_www_server\nsigning_key\nserial = 1\n')
        subprocess.run(['certtool', '--generate-privkey', '--key-type=ecdsa', '--curve=secp256r1',
                        '--outfile', os.path.join(tls, 'key.pem')], check=True, capture_output=True)
        subprocess.run(['certtool', '--generate-self-signed', '--load-privkey', os.path.join(tls, 'key.pem'),
                        '--template', os.path.join(tls, 'template'), '--outfile', os.path.join(tls, 'cert.pem')],
                       check=True, capture_output=True)
        # apps started on demand run as nobody: they need to read their script and write their times
        app = self.path('app')
        os.makedirs(app)
        os.chmod(app, 0o1777)
        shutil.copy(os.path.join(HERE, 'app.py'), os.path.join(app, 'app.py'))
        os.chmod(os.path.join(app, 'app.py'), 0o644)

    def nginx_conf(self, name, servers, upstream=''):
        tmp = self.path('nginx-tmp', name)
        os.makedirs(tmp, exist_ok=True)
        conf = f'''worker_processes 2;
pid {self.path(name + '.pid')};
error_log {self.path(name + '.err')} warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ text/html html; application/octet-stream bin; }}
    {upstream}
    {servers}
}}
'''
        p = self.path(name + '.conf')
        with open(p, 'w') as f:
            f.write(conf)
        return p

    def start_servers(self):
        t = self.path
        gate = os.path.join(ROOT, 'httpgate')
        ssa = 'systemd-socket-activate'
        backend = self.nginx_conf('backend', f'''server {{
        listen 127.0.0.1:{BACKEND}; listen [::1]:{BACKEND};
        root {t('www')};
    }}''')
        proxy_loc = f'''location / {{ proxy_pass http://app; proxy_http_version 1.1;
            proxy_set_header Connection ""; proxy_max_temp_file_size 0; }}'''
        proxy = self.nginx_conf('nginx-proxy', f'''server {{ listen 127.0.0.1:18104; {proxy_loc} }}
    server {{ listen 127.0.0.1:18444 ssl;
        ssl_certificate {t('tls', 'cert.pem')}; ssl_certificate_key {t('tls', 'key.pem')};
        ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m; ssl_session_tickets on;
        {proxy_loc} }}''', upstream=f'upstream app {{ server 127.0.0.1:{BACKEND}; keepalive 64; }}')
        self.sv.start('backend', ['nginx', '-e', t('backend.err'), '-c', backend])
        self.sv.start('nginx-proxy', ['nginx', '-e', t('nginx-proxy.err'), '-c', proxy])
        if not wait_port(BACKEND):
            raise SystemExit('bench: the backend nginx did not start')

        def accept(name, port, argv, env=()):
            cmd = [ssa, '--accept', '-l', f'127.0.0.1:{port}']
            for e in env:
                cmd += ['-E', e]
            self.sv.start(name, cmd + argv)

        accept('httpgate', 18101, [gate, str(BACKEND)])
        accept('relay-glibc', 18105, [os.path.join(BIN, 'relay-glibc'), str(BACKEND)])
        if BASELINE:
            accept('baseline', 18107, [BASELINE_GATE, str(BACKEND)])
        if os.access(os.path.join(BIN, 'relay-musl'), os.X_OK):
            accept('relay-musl', 18106, [os.path.join(BIN, 'relay-musl'), str(BACKEND)])
        self.sv.start('socket-proxyd', [ssa, '-l', '127.0.0.1:18103', PROXYD, f'127.0.0.1:{BACKEND}'])
        # the original: binds every address (only loopback exists here) and daemonizes
        self.start_httpgate_orig('httpGate', ['18102', str(BACKEND)])
        # names files of 10, 10 000 and 100 000 entries, the last one used
        for n, port in ((10, 18110), (10000, 18111), (100000, 18112)):
            p = t(f'names-{n}')
            with open(p, 'w') as f:
                for i in range(n - 1):
                    f.write(f'app{i} {20000 + i % 40000} nobody /tmp ^ /bin/false\n')
                f.write(f'last {BACKEND} nobody /tmp ^ /bin/false\n')
            accept(f'names-{n}', port, [gate, '--launcher=', p], env=[f'CACHE_DIRECTORY={t("cache")}'])
        # app start: an entry whose command sleeps, then listens
        for name, port, app_port in (('app-httpgate', 18120, 18121), ('app-httpGate', 18122, 18123)):
            p = t(f'names-{name}')
            with open(p, 'w') as f:
                f.write(f'app {app_port} nobody {t("app")} ^ /usr/bin/python3 {t("app", "app.py")} {app_port} 0.5 '
                        f'{t("app", name + ".listen")}\n')
        accept('app-httpgate', 18120, [gate, '--launcher=', f'--lock-dir={t("run")}', t('names-app-httpgate')])
        self.start_httpgate_orig('app-httpGate', ['18122', t('names-app-httpGate')])
        # TLS: the same certificate for all; the gate's ticket key in its state directory
        # httpgate-tls directly, as httpgate-tls@.service runs it (httpgate would exec it first)
        pem = f'{t("tls", "key.pem")},{t("tls", "cert.pem")}'
        accept('tls-httpgate', 18443, [gate + '-tls', str(BACKEND), pem], env=[f'STATE_DIRECTORY={t("state")}'])
        # the same sources linked the other two ways (Makefile, TLS_LINK): what the default link saves
        for link, port in TLS_LINKS:
            accept(f'tls-httpgate-{link}', port, [os.path.join(BIN, f'httpgate-tls-{link}'), str(BACKEND), pem],
                   env=[f'STATE_DIRECTORY={t("state")}'])
        self.start_httpgate_orig('tls-httpGate', ['18445', str(BACKEND), f'{t("tls", "key.pem")},{t("tls", "cert.pem")}'])
        for port in (18101, 18102, 18103, 18104, 18105, 18443, 18444):
            if not wait_port(port):
                raise SystemExit(f'bench: nothing listens on {port}')

        self.rows = [('direct', 'backend directly (nginx, static files)', BACKEND, 'backend'),
                     ('httpgate', 'httpgate, `systemd-socket-activate --accept`', 18101, 'httpgate'),
                     ('httpGate', 'original httpGate (picolisp)', 18102, 'httpGate'),
                     ('proxyd', 'systemd-socket-proxyd', 18103, 'socket-proxyd'),
                     ('nginx', 'nginx reverse proxy', 18104, 'nginx-proxy'),
                     ('relay-glibc', 'minimal C relay, glibc dynamic, `--accept`', 18105, 'relay-glibc')]
        if os.access(os.path.join(BIN, 'relay-musl'), os.X_OK):
            self.rows.append(('relay-musl', 'minimal C relay, static musl, `--accept`', 18106, 'relay-musl'))
        if BASELINE:
            self.rows.insert(2, ('baseline', f'httpgate at {BASELINE} (BENCH_BASELINE), `--accept`', 18107,
                                 'baseline'))
        for key, _, port, _ in self.rows:
            status, body, _ = http_get(port, '/small.html')
            if status != 200 or b'<title>small' not in body:
                raise SystemExit(f'bench: {key} on {port} answered {status}')

    def start_httpgate_orig(self, name, args):
        """httpGate daemonizes: find the daemon by the port it listens on."""
        before = set(all_pids())
        p = self.sv.start(name, [HTTPGATE] + args, env=dict(os.environ, LANG='C.UTF-8'))
        p.wait(10)
        if not wait_port(int(args[0])):
            self.res['notes'].append(f'{name}: httpGate did not listen on {args[0]}')
            return
        for pid in set(all_pids()) - before:
            if comm(pid) == 'httpGate':
                self.sv.adopt(name, pid)

    # -------------------------------------------------------- measurements
    def plain(self):
        rows = self.res['rows']
        for key, label, port, cg in self.rows:
            rows[key] = {'label': label, 'close': [], 'keep': [], 'bulk': []}
        for r in range(RUNS):
            for close in (True, False):
                for key, label, port, cg in self.rows:
                    log(f'round {r + 1}/{RUNS}: {key} {"new connections" if close else "kept-alive"}')
                    pid = self.sv.pid_of(cg)
                    cpu0, us0 = cpu_ticks(pid), self.sv.cpu_us(cg)
                    w = wrk(port, '/small.html', close)
                    settle(1.0 if close else 0.3)
                    cpu1, us1 = cpu_ticks(pid), self.sv.cpu_us(cg)
                    if us0 is not None and us1 is not None and w['requests']:
                        w['cpu_us'] = (us1 - us0) / w['requests']
                    if close and cpu0 and cpu1 and w['requests']:
                        # the activator's (or daemon's) own CPU, and its reaped children's (the gates)
                        tick = 1e6 / os.sysconf('SC_CLK_TCK')
                        w['cpu_self_us'] = (cpu1[0] - cpu0[0]) * tick / w['requests']
                        w['cpu_children_us'] = (cpu1[1] - cpu0[1]) * tick / w['requests']
                    rows[key]['close' if close else 'keep'].append(w)
            for key, label, port, cg in self.rows:
                for _ in range(max(1, BULK_RUNS // RUNS + (1 if r < BULK_RUNS % RUNS else 0))):
                    rows[key]['bulk'].append(curl_speed(f'http://127.0.0.1:{port}/big.bin'))
                    settle(0.2)
            log(f'round {r + 1}/{RUNS}: bulk done')

    def names(self):
        out = self.res['names']
        for n, port in ((10, 18110), (10000, 18111), (100000, 18112)):
            t0 = time.monotonic()
            status, body, _ = http_get(port, '/last/small.html', timeout=60)
            first = time.monotonic() - t0
            if status != 200:
                self.res['notes'].append(f'names file of {n}: first request answered {status}')
            out[str(n)] = {'first_ms': first * 1000, 'close': []}
        for r in range(RUNS):
            for n, port in ((10, 18110), (10000, 18111), (100000, 18112)):
                log(f'round {r + 1}/{RUNS}: names file of {n} entries')
                us0 = self.sv.cpu_us(f'names-{n}')
                w = wrk(port, '/last/small.html', True)
                settle(1.0)
                us1 = self.sv.cpu_us(f'names-{n}')
                if us0 is not None and us1 is not None and w['requests']:
                    w['cpu_us'] = (us1 - us0) / w['requests']
                out[str(n)]['close'].append(w)

    def tls(self):
        out = self.res['tls']
        peers = [('httpgate', 18443, 'tls-httpgate'), ('nginx', 18444, 'nginx-proxy')]
        if wait_port(18445, timeout=1):
            peers.append(('httpGate', 18445, 'tls-httpGate'))
        peers += [(f'httpgate-{link}', port, f'tls-httpgate-{link}') for link, port in TLS_LINKS]
        for key, port, cg in peers:
            out[key] = {'full': [], 'resume': [], 'resumed_frac': [], 'errors': 0, 'bulk': [],
                        'cpu_full': [], 'cpu_resume': [], 'phases_full': [], 'phases_resume': []}
        self.res['tls_loader'] = loader_statistics()
        tlsload = os.path.join(BIN, 'tlsload')
        for r in range(RUNS):
            for key, port, cg in peers:
                for mode in ('full', 'resume'):
                    log(f'round {r + 1}/{RUNS}: TLS {mode} handshakes, {key}')
                    gate_log = os.path.join(self.tmp, cg + '.log')
                    log_at = os.path.getsize(gate_log) if key.startswith('httpgate') else None
                    us0 = self.sv.cpu_us(cg)
                    p = run([tlsload, '127.0.0.1', str(port), '/small.html', str(SECS), str(TLS_WORKERS), mode],
                            timeout=SECS + 60)
                    settle(1.0)
                    us1 = self.sv.cpu_us(cg)
                    try:
                        rate, frac, errors = p.stdout.split()
                        out[key][mode].append(float(rate))
                        out[key]['errors'] += int(errors)
                        if mode == 'resume':
                            out[key]['resumed_frac'].append(float(frac))
                        if us0 is not None and us1 is not None and float(rate) > 0:
                            out[key]['cpu_' + mode].append((us1 - us0) / (float(rate) * SECS))
                    except ValueError:
                        out[key][mode].append(None)
                    if log_at is not None:
                        out[key]['phases_' + mode] += instance_phases(gate_log, log_at)
            for key, port, cg in peers:
                if key.startswith('httpgate-'):
                    continue  # the other links: their handshakes are the point
                for _ in range(max(1, BULK_RUNS // RUNS)):
                    out[key]['bulk'].append(curl_speed(f'https://127.0.0.1:{port}/big.bin', tls=True))
                    settle(0.2)

    def app_start(self):
        out = self.res['app']
        for name, port, app_port in (('httpgate', 18120, 18121), ('httpGate', 18122, 18123)):
            out[name] = {'delay_ms': [], 'total_ms': [], 'errors': 0}
            rec = self.path('app', f'app-{name}.listen')
            for i in range(APP_RUNS):
                log(f'app start {i + 1}/{APP_RUNS}: {name}')
                deadline = time.time() + 10
                while not port_closed(app_port) and time.time() < deadline:
                    time.sleep(0.05)
                settle(0.2)
                try:
                    os.unlink(rec)
                except FileNotFoundError:
                    pass
                try:
                    s = socket.create_connection(('127.0.0.1', port), timeout=30)
                    t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
                    s.sendall(b'GET /app/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
                    first = s.recv(1)
                    t1 = time.clock_gettime(time.CLOCK_MONOTONIC)
                    rest = s.recv(4096)
                    s.close()
                    listened = float(open(rec).read())
                    if not (first + rest).startswith(b'HTTP/1.1 200') and not (first + rest).startswith(b'HTTP/1.0 200'):
                        raise OSError(f'answer {(first + rest)[:40]!r}')
                    out[name]['delay_ms'].append((t1 - listened) * 1000)
                    out[name]['total_ms'].append((t1 - t0) * 1000)
                except (OSError, ValueError) as e:
                    out[name]['errors'] += 1
                    self.res['notes'].append(f'app start through {name}: {e}')

    def memory(self):
        """One idle held-open connection: PSS of what it keeps alive (from one
        connection), and the system-wide cost (process + kernel, from the
        row's memory cgroup) per connection of MEM_CONNS held at once."""
        for key, label, port, cg in self.rows:
            row = self.res['rows'][key]
            cgdir = self.sv.cgroup(cg)
            settle(1.0)
            before = {pid: pss_kib(pid) for pid in cg_pids(cgdir)} if cgdir else {}
            usage0 = cg_usage(cgdir) if cgdir else None
            status, _, s = http_get(port, '/small.html', keep=True)
            time.sleep(0.5)
            after = {pid: pss_kib(pid) for pid in cg_pids(cgdir)} if cgdir else {}
            row['idle_pss_kib'] = sum(after.values()) - sum(before.values())
            row['idle_procs'] = len([p for p in after if p not in before and alive(p)])
            socks = [s]
            for _ in range(MEM_CONNS - 1):
                socks.append(http_get(port, '/small.html', keep=True)[2])
            time.sleep(1.0)
            usage1 = cg_usage(cgdir) if cgdir else None
            if usage0 is not None and usage1 is not None:
                row['idle_sys_kib'] = (usage1 - usage0) / 1024 / MEM_CONNS
            for s in socks:
                s.close()
            settle(1.0)

    # -------------------------------------------------------- all
    def environment(self):
        e = self.res['env']
        e['date'] = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
        e['kernel'] = os.uname().release
        e['cpus'] = os.cpu_count()
        try:
            e['cpu'] = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
        except StopIteration:
            e['cpu'] = '?'
        e['git'] = run(['git', '-C', ROOT, 'describe', '--always', '--dirty']).stdout.strip()
        e['nginx'] = run(['nginx', '-v']).stderr.strip().split('/')[-1]
        e['load_start'] = open('/proc/loadavg').read().split()[0]
        e['quick'] = QUICK
        e['runs'], e['secs'], e['conns'] = RUNS, SECS, CONNS

    def main(self):
        subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
        # client ports above the servers' (18xxx); loopback TIME_WAIT reuse (the default 2)
        with open('/proc/sys/net/ipv4/ip_local_port_range', 'w') as f:
            f.write('20000 65000')
        self.environment()
        self.files()
        self.start_servers()
        t0 = time.time()
        only = os.environ.get('BENCH_ONLY', 'plain,names,tls,app,memory').split(',')
        for phase, fn in (('plain', self.plain), ('names', self.names), ('tls', self.tls),
                          ('app', self.app_start), ('memory', self.memory)):
            if phase in only:
                fn()
        self.res['env']['seconds'] = round(time.time() - t0)
        self.res['env']['load_end'] = open('/proc/loadavg').read().split()[0]
        with open(self.path('results.json'), 'w') as f:
            json.dump(self.res, f, indent=1)


def all_pids():
    return [int(d) for d in os.listdir('/proc') if d.isdigit()]


def comm(pid):
    try:
        return open(f'/proc/{pid}/comm').read().strip()
    except OSError:
        return ''


def inner():
    tmp = os.environ['HTTPGATE_BENCH_TMP']
    b = Bench(tmp, [t for t in os.environ.get('HTTPGATE_BENCH_CG', '').split(':') if t])

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        b.main()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        b.sv.stop_all()
        reap()


# ---------------------------------------------------------------- report


def ratio(a, b):
    return a / b if a is not None and b else None


def report(res):
    rows, env = res.get('rows', {}), res.get('env', {})
    sysrow = res.get('systemd')
    L = []
    L.append('# httpgate benchmark')
    L.append('')
    L.append(f'`make bench`{" (BENCH_QUICK=1: rough)" if env.get("quick") else ""}, {env.get("date", "?")}, '
             f'{env.get("cpus", "?")} CPUs ({env.get("cpu", "?")}), Linux {env.get("kernel", "?")}, '
             f'nginx {env.get("nginx", "?")}, httpgate {env.get("git", "?")}. Client, proxy and backend share '
             f'the CPUs, all on loopback in a private network namespace. Each figure is the median of '
             f'{env.get("runs", "?")} runs of {env.get("secs", "?")} s (100 MB downloads: {BULK_RUNS if not env.get("quick") else 1}'
             f' runs) ± half the range; wrk with {env.get("conns", "?")} connections. MB = 10^6 bytes.')
    L.append('')
    L.append(f'Load average of the machine at the start and end of measuring: {env.get("load_start", "?")}, '
             f'{env.get("load_end", "?")}. Other work on the machine lowers the rates and widens their spread; '
             'the CPU columns (CPU time of each row\'s own cgroup per request) move much less, so compare those '
             'when the rates are noisy.')
    L.append('')
    L.append('| | new conns/s (`Connection: close`) | p50 ms | p99 ms | CPU µs per new conn | kept-alive req/s '
             '| CPU µs per kept-alive req | 100 MB MB/s '
             '| idle conn: processes, PSS KiB | idle conn: system KiB | app start: first byte after listen, ms |')
    L.append('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    app = res.get('app', {})

    def line(key, r, label=None):
        close = r.get('close', [])
        cells = [label or r.get('label', key),
                 Stat([c['rps'] for c in close]).cell(),
                 Stat([c['p50'] for c in close]).cell(),
                 Stat([c['p99'] for c in close]).cell(),
                 Stat([c.get('cpu_us') for c in close]).cell(),
                 Stat([c['rps'] for c in r.get('keep', [])]).cell(),
                 Stat([c.get('cpu_us') for c in r.get('keep', [])]).cell(),
                 Stat(r.get('bulk', [])).cell()]
        if 'idle_pss_kib' in r:
            cells.append(f'{r.get("idle_procs", 0)}, {fmt_num(max(0, r["idle_pss_kib"]))}')
        else:
            cells.append('—')
        cells.append(fmt_num(r.get('idle_sys_kib')) if r.get('idle_sys_kib') is not None else '—')
        appk = {'httpgate': 'httpgate', 'httpGate': 'httpGate', 'systemd': 'systemd'}.get(key)
        a = app.get(appk) if appk in ('httpgate', 'httpGate') else (r.get('app') if key == 'systemd' else None)
        cells.append(Stat(a['delay_ms']).cell() if a and a.get('delay_ms') else '—')
        L.append('| ' + ' | '.join(cells) + ' |')

    for key in ('direct', 'httpgate', 'baseline', 'systemd', 'httpGate', 'proxyd', 'nginx', 'relay-glibc',
                'relay-musl'):
        if key == 'systemd':
            if sysrow and sysrow.get('rows'):
                for k, r in sysrow['rows'].items():
                    line('systemd' if k == 'httpgate' else k, r)
            else:
                why = res.get('systemd_error') or (sysrow or {}).get('error') or 'left out (BENCH_SYSTEMD=0)'
                L.append(f'| httpgate under real systemd (nspawn, `Accept=yes`) | not measured: {why} '
                         '| | | | | | | | | |')
            continue
        if key in rows:
            line(key, rows[key])
    for n in res.get('notes', []):
        L.append('')
        L.append(f'Note: {n}')
    errs = [f'{k}: {sum(c["errors"] + c["non2xx"] for c in r.get("close", []) + r.get("keep", []))}'
            for k, r in rows.items() if sum(c['errors'] + c['non2xx'] for c in r.get('close', []) + r.get('keep', []))]
    if errs:
        L.append('')
        L.append('wrk socket errors or non-2xx answers (summed over runs): ' + ', '.join(errs) + '.')
    if sysrow and sysrow.get('note'):
        L.append('')
        L.append(sysrow['note'])

    # (httpGate ignores SIGCHLD: its children's CPU is never added to its own, so it is left out here)
    cpu_rows = [(k, r) for k, r in rows.items() if k in ('httpgate', 'relay-glibc', 'relay-musl')
                and any('cpu_children_us' in c for c in r.get('close', []))]
    if cpu_rows:
        L.append('')
        L.append('CPU time per new connection (`Connection: close` runs; from /proc utime/stime of the activator, '
                 'and of its reaped children; µs):')
        L.append('')
        L.append('| | activator | per-connection process(es): fork, exec, work | total |')
        L.append('| --- | --- | --- | --- |')
        for k, r in cpu_rows:
            a = Stat([c.get('cpu_self_us') for c in r['close']])
            c_ = Stat([c.get('cpu_children_us') for c in r['close']])
            tot = (a.med or 0) + (c_.med or 0)
            L.append(f'| {r.get("label", k)} | {a.cell()} | {c_.cell()} | {fmt_num(tot)} |')

    names = res.get('names', {})
    if names:
        L.append('')
        L.append('Per-connection cost with a names file (httpgate under `systemd-socket-activate --accept`, '
                 '`Connection: close`, the last entry looked up):')
        L.append('')
        L.append('| entries | new conns/s | p50 ms | p99 ms | vs 10 entries | CPU µs per conn | CPU vs 10 entries '
                 '| first request (builds the index) ms |')
        L.append('| --- | --- | --- | --- | --- | --- | --- | --- |')
        cbase = Stat([c.get('cpu_us') for c in names.get('10', {}).get('close', [])]).med
        base = Stat([c['rps'] for c in names.get('10', {}).get('close', [])]).med
        for n in ('10', '10000', '100000'):
            if n not in names:
                continue
            s = Stat([c['rps'] for c in names[n]['close']])
            r = ratio(s.med, base)
            cs = Stat([c.get('cpu_us') for c in names[n]['close']])
            cr = ratio(cs.med, cbase)
            L.append(f'| {int(n):,} | {s.cell()} | {Stat([c["p50"] for c in names[n]["close"]]).cell()} | '
                     f'{Stat([c["p99"] for c in names[n]["close"]]).cell()} | '
                     f'{f"{r:.2f}×" if r else "—"} | {cs.cell()} | {f"{cr:.2f}×" if cr else "—"} '
                     f'| {fmt_num(names[n]["first_ms"])} |')

    tls = res.get('tls', {})
    if tls:
        L.append('')
        L.append(f'TLS, the same certificate (ECDSA P-256, certtool) for all; {TLS_WORKERS} client processes, each '
                 'connection a handshake and one small GET (bench/tlsload.c, GnuTLS client); resumed: with the '
                 'previous connection\'s session ticket; bulk: curl, 100 MB:')
        L.append('')
        L.append('| | full handshakes/s | resumed handshakes/s | resumed / full | resumed share '
                 '| server CPU µs per full | per resumed | TLS 100 MB MB/s |')
        L.append('| --- | --- | --- | --- | --- | --- | --- | --- |')
        labels = {'httpgate': 'httpgate-tls (`--accept`), as built: static musl', 'nginx': 'nginx reverse proxy',
                  'httpGate': 'original httpGate', 'httpgate-glibc': 'httpgate-tls, `TLS_LINK=glibc`',
                  'httpgate-shared': 'httpgate-tls, `TLS_LINK=shared`'}
        for k in labels:
            if k not in tls:
                continue
            t = tls[k]
            f, rr = Stat(t['full']), Stat(t['resume'])
            q = ratio(rr.med, f.med)
            frac = Stat(t['resumed_frac']).med
            L.append(f'| {labels[k]} | {f.cell()} | {rr.cell()} | {f"{q:.2f}×" if q else "—"} | '
                     f'{f"{frac * 100:.0f}%" if frac is not None else "—"} | {Stat(t.get("cpu_full", [])).cell()} '
                     f'| {Stat(t.get("cpu_resume", [])).cell()} | {Stat(t["bulk"]).cell() if t["bulk"] else "—"} |')
        L.append('')
        L.append('Where the CPU of one HTTPS instance goes (µs, the median over the instances of all runs, from each '
                 'instance\'s own figures: its end line says `cpu=exec:…,init:…,gate:…,credentials:…,handshake:…`, '
                 'and the journal has the same as HTTPGATE_CPU_* fields). exec: from the activator\'s fork to the '
                 'gate\'s first initializer (the child\'s set-up, exec, the dynamic loader, libc\'s start); init: the '
                 'libraries\' initializers (GnuTLS\'s global init: its ASN.1 trees, CPU features, random generator, '
                 'system priority file); credentials: reading and checking key and certificate chain (only when the '
                 'handshake needs a certificate); handshake: the rest of the handshake (key exchange, signature, '
                 'ticket); rest: the gate\'s other work from main on (ticket key, request, answer, log). The exit '
                 'after the end line and the activator\'s own accept are not in it: the cgroup column has them.')
        L.append('')
        L.append('| build | handshake | exec | init | credentials | handshake | rest | sum | cgroup CPU per handshake |')
        L.append('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
        for k in ('httpgate', 'httpgate-glibc', 'httpgate-shared'):
            for mode in ('full', 'resume'):
                ph = tls.get(k, {}).get('phases_' + mode) or []
                if not ph:
                    continue
                m = {f: statistics.median(d.get(f, 0) for d in ph) for f in PHASES}
                rest = max(0, m['gate'] - m['credentials'] - m['handshake'])
                total = m['exec'] + m['init'] + m['gate']
                us = lambda v: f'{v:,.0f}'.replace(',', '\u202f')
                L.append(f'| {labels[k]} | {"full" if mode == "full" else "resumed"} | {us(m["exec"])} '
                         f'| {us(m["init"])} | {us(m["credentials"])} | {us(m["handshake"])} '
                         f'| {us(rest)} | {us(total)} '
                         f'| {Stat(tls[k].get("cpu_" + mode, [])).cell()} |')
        ld = res.get('tls_loader') or {}
        if ld:
            L.append('')
            L.append('The dynamic loader (`LD_DEBUG=statistics httpgate-tls --help`, and ldd): ' + '; '.join(
                f'{ {"musl": "as built", "glibc": "TLS_LINK=glibc", "shared": "TLS_LINK=shared"}[k] }: '
                + (f'{v["libs"]} shared libraries, {fmt_num(v["relocations"])} symbol and '
                   f'{fmt_num(v["relative"])} relative relocations, {fmt_num(v["cycles"])} cycles in the loader'
                   if v['libs'] else 'static, no loader')
                + f', {v["bytes"] / 1e6:.1f} MB' for k, v in ld.items()) + '.')

    if res.get('sandbox_table') or res.get('sandbox_error'):
        L.append('')
        L.append('Under real systemd, where the CPU of one new connection goes (bench/sandbox-cost.py, its own '
                 'container, 8 clients inside it, CPU time per connection in µs: PID 1 setting up and collecting '
                 'the unit; the instance from fork to exit, split by the gate\'s own journal fields into the '
                 'forked child before main (systemd\'s set-up of the sandbox, exec, loading) and the gate; '
                 'journald and D-Bus; HTTPS includes the handshake). Variants: `bare` no sandbox at all, `gate` '
                 'the units as installed (the gate\'s own --sandbox and the cheap settings), `before` and '
                 '`namespaces` the namespace sandboxes of earlier versions, `gate-K` without and `gate+K`/`+K` '
                 'with one setting (keys in bench/sandbox-cost.py: js a journal stream per instance, '
                 'nodeps DefaultDependencies=no, nocollect no CollectMode=, ipa IPAddressDeny= (the units have it), raf '
                 'RestrictAddressFamilies=, pu PrivateUsers=, ptmp PrivateTmp=, psys ProtectSystem=strict, scf '
                 'SystemCallFilter=@system-service):')
        L.append('')
        L.append(res.get('sandbox_table') or f'not measured: {res.get("sandbox_error")}')

    # the targets of issue 5
    def med(key, col):
        r = rows.get(key, {})
        if col == 'bulk':
            return Stat(r.get('bulk', [])).med
        return Stat([c[col[1]] for c in r.get(col[0], [])]).med

    L.append('')
    L.append('Targets (issue 5), ratios of medians from this run:')
    L.append('')
    L.append('| target | measured | met |')
    L.append('| --- | --- | --- |')

    def target(name, value, ok, fmt='{:.2f}×'):
        L.append(f'| {name} | {fmt.format(value) if value is not None else "—"} | '
                 f'{"—" if value is None else ("yes" if ok(value) else "**no**")} |')

    hg_bulk = med('httpgate', 'bulk')
    if 'baseline' in rows:
        # issue 12: framing responses keeps the splice path as fast as before
        for name, col in (('kept-alive req/s', ('keep', 'rps')), ('100 MB MB/s', 'bulk'),
                          ('new conns/s', ('close', 'rps'))):
            now, before = ratio(med('httpgate', col), med('proxyd', col)), ratio(med('baseline', col),
                                                                                  med('proxyd', col))
            L.append(f'| {name} vs socket-proxyd: httpgate {fmt_ratio(now)}, at {BASELINE} {fmt_ratio(before)} '
                     f'| {fmt_ratio(ratio(now, before))} of before | '
                     f'{"—" if now is None or before is None else ("yes" if now >= 0.95 * before else "**no**")} |')
        cb, cn = med('baseline', ('keep', 'cpu_us')), med('httpgate', ('keep', 'cpu_us'))
        L.append(f'| CPU µs per kept-alive request: httpgate {fmt_num(cn) if cn else "—"}, at {BASELINE} '
                 f'{fmt_num(cb) if cb else "—"} | {fmt_ratio(ratio(cn, cb))} of before | |')
    target('bulk ≥ 1.0× socket-proxyd', ratio(hg_bulk, med('proxyd', 'bulk')), lambda v: v >= 1.0)
    target('bulk ≥ 4× httpGate', ratio(hg_bulk, med('httpGate', 'bulk')), lambda v: v >= 4.0)
    hg_keep = med('httpgate', ('keep', 'rps'))
    target('kept-alive req/s ≥ 1.0× socket-proxyd', ratio(hg_keep, med('proxyd', ('keep', 'rps'))), lambda v: v >= 1.0)
    target('kept-alive req/s ≥ 1.2× httpGate', ratio(hg_keep, med('httpGate', ('keep', 'rps'))), lambda v: v >= 1.2)
    hg_new = med('httpgate', ('close', 'rps'))
    target('new conns/s ≥ 0.9× minimal glibc relay', ratio(hg_new, med('relay-glibc', ('close', 'rps'))),
           lambda v: v >= 0.9)
    if 'relay-musl' in rows:
        L.append(f'| (for reference) new conns/s vs minimal static musl relay | '
                 f'{fmt_ratio(ratio(hg_new, med("relay-musl", ("close", "rps"))))} | |')
    # CPU per request (each row's cgroup): what the machine pays, steadier than rates on a busy machine
    cpu_new = ratio(med('httpgate', ('close', 'cpu_us')), med('relay-glibc', ('close', 'cpu_us')))
    L.append(f'| (CPU) new connection: httpgate\'s CPU ÷ the minimal glibc relay\'s (≤ 1.11 matches 0.9× the rate) '
             f'| {fmt_ratio(cpu_new)} | {"—" if cpu_new is None else ("yes" if cpu_new <= 1 / 0.9 else "**no**")} |')
    for peer, name, want in (('proxyd', 'socket-proxyd', 1.0), ('httpGate', 'httpGate', 1.2)):
        c = ratio(med(peer, ('keep', 'cpu_us')), med('httpgate', ('keep', 'cpu_us')))
        L.append(f'| (CPU) kept-alive request: {name}\'s CPU ÷ httpgate\'s (≥ {want} matches the rate target) '
                 f'| {fmt_ratio(c)} | {"—" if c is None else ("yes" if c >= want else "**no**")} |')
    target('p99 at 32 clients ≤ 50 ms', med('httpgate', ('close', 'p99')), lambda v: v <= 50, '{:.1f} ms')
    if names.get('10') and names.get('100000'):
        b10 = Stat([c['rps'] for c in names['10']['close']]).med
        b100k = Stat([c['rps'] for c in names['100000']['close']]).med
        if b10 and b100k:
            extra = (b10 / b100k - 1) * 100  # per-connection time = 1 / rate
            target('100 000 entries cost ≤ 10% more per connection than 10 (wall: conns/s)', extra,
                   lambda v: v <= 10, '{:+.1f}%')
        c10 = Stat([c.get('cpu_us') for c in names['10']['close']]).med
        c100k = Stat([c.get('cpu_us') for c in names['100000']['close']]).med
        if c10 and c100k:
            target('100 000 entries cost ≤ 10% more per connection than 10 (CPU of the row per conn)',
                   (c100k / c10 - 1) * 100, lambda v: v <= 10, '{:+.1f}%')
    hg_sys, orig_sys = rows.get('httpgate', {}).get('idle_sys_kib'), rows.get('httpGate', {}).get('idle_sys_kib')
    target('idle connection: system-wide memory < httpGate\'s pair', ratio(hg_sys, orig_sys), lambda v: v < 1.0)
    target('idle connection: one process', rows.get('httpgate', {}).get('idle_procs'), lambda v: v == 1, '{} process(es)')
    target('idle connection: PSS vs httpGate\'s pair', ratio(rows.get('httpgate', {}).get('idle_pss_kib'),
                                                            rows.get('httpGate', {}).get('idle_pss_kib')),
           lambda v: v < 1.0)
    a = app.get('httpgate', {}).get('delay_ms')
    target('app start: first byte ≤ 10 ms after the app listens', Stat(a or []).med, lambda v: v <= 10, '{:.1f} ms')
    if tls.get('httpgate') and tls.get('nginx'):
        hs = lambda k, c: Stat(tls.get(k, {}).get(c, [])).med
        L.append('')
        L.append('Targets (issue 11), TLS, one run, the same certificate for all:')
        L.append('')
        L.append('| target | measured | met |')
        L.append('| --- | --- | --- |')
        target('server CPU per full handshake ≤ 0.6× the original httpGate\'s',
               ratio(hs('httpgate', 'cpu_full'), hs('httpGate', 'cpu_full')), lambda v: v <= 0.6)
        target('server CPU per resumed handshake ≤ 0.7× httpgate\'s own full one',
               ratio(hs('httpgate', 'cpu_resume'), hs('httpgate', 'cpu_full')), lambda v: v <= 0.7)
        target('full handshakes/s ≥ 1.5× the original httpGate\'s',
               ratio(hs('httpgate', 'full'), hs('httpGate', 'full')), lambda v: v >= 1.5)
        target('TLS bulk ≥ 0.9× nginx', ratio(hs('httpgate', 'bulk'), hs('nginx', 'bulk')), lambda v: v >= 0.9)
        L.append(f'| (for reference) server CPU per full handshake vs the same sources linked `TLS_LINK=glibc` '
                 f'| {fmt_ratio(ratio(hs("httpgate", "cpu_full"), hs("httpgate-glibc", "cpu_full")))} | |')
    sysrows = (sysrow or {}).get('rows') or {}
    if sysrows:
        L.append('')
        L.append('Targets (issue 10), real systemd, `Connection: close`, 32 clients:')
        L.append('')
        L.append('| target | measured | met |')
        L.append('| --- | --- | --- |')
        sb_rate = Stat([c['rps'] for c in sysrows.get('httpgate', {}).get('close', [])]).med
        bare_rate = Stat([c['rps'] for c in sysrows.get('bare', {}).get('close', [])]).med
        target('sandboxed new conns/s ≥ 0.8× the unit with no sandbox', ratio(sb_rate, bare_rate), lambda v: v >= 0.8)
        target('sandboxed new conns/s ≥ 280/s (8× issue 10\'s 35/s)', sb_rate, lambda v: v >= 280, '{:.0f}/s')
        target('sandboxed p99 ≤ 200 ms', Stat([c['p99'] for c in sysrows.get('httpgate', {}).get('close', [])]).med,
               lambda v: v <= 200, '{:.0f} ms')
    L.append('')
    L.append(f'Made by `make bench` in {env.get("seconds", "?")} s of measuring; raw figures in bench/results-raw/.')
    return '\n'.join(L) + '\n'


def fmt_ratio(v):
    return f'{v:.2f}×' if v is not None else '—'


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--inner':
        inner()
    elif len(sys.argv) > 1 and sys.argv[1] == '--report':
        print(report(json.load(open(sys.argv[2]))))
    else:
        outer()
