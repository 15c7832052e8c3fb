#!/usr/bin/python3
"""bench/nspawn.py TMP: the "httpgate under real systemd" row of `make bench`.

Boots this machine's own root as a container (test/lib/nspawn.py, as the
test suite does: overlayfs, lower /, upper in TMP; `systemd-nspawn --boot
--private-network`), installs httpgate into it with `make install
DESTDIR=`, starts the real httpgate.socket (port 80, Accept=yes) and
httpgate-launch.socket, and measures from inside the container's private network (nsenter -n): the
backend nginx and the clients are the host's programs in that network. The
container runs in its own memory cgroup, so the system-wide idle figure
includes what systemd itself keeps per connection unit. Prints one JSON
object on stdout; tears everything down (nspawn stopped by PID, overlay
unmounted, its directory in TMP removed) whatever happens.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, 'test', 'lib'))
import run as B  # noqa: E402  (bench/run.py: the shared measuring helpers)
from nspawn import Container  # noqa: E402  (the container the systemd test tiers boot)

APP_PORT = 18221


def log(*a):
    print('bench (systemd):', *a, file=sys.stderr, flush=True)


def sh(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def setup(c):
    """Before the boot: the app, the names file, the unit without a sandbox."""
    app = f'{c.root}/var/lib/httpgate-bench'
    os.makedirs(app, exist_ok=True)
    os.chmod(app, 0o1777)
    shutil.copy(f'{HERE}/app.py', f'{app}/app.py')
    os.chmod(f'{app}/app.py', 0o644)
    # the same gate without the sandbox, to show what the sandbox costs per connection
    c.write('/etc/systemd/system/httpgate-bare.socket',
            '[Socket]\nListenStream=81\nBindIPv6Only=both\nAccept=yes\nMaxConnections=1024\n'
            'TriggerLimitIntervalSec=0\nTriggerLimitBurst=0\n')
    c.write('/etc/systemd/system/httpgate-bare@.service',
            '[Unit]\nCollectMode=inactive-or-failed\n[Service]\nExecStart=/usr/bin/httpgate /etc/httpgate/names\n'
            'SuccessExitStatus=1 2\nStandardOutput=null\nStandardError=null\nUser=httpgate\nGroup=httpgate\n')
    c.write('/etc/httpgate/names',
            f'@ {B.BACKEND} nobody / ^ /bin/false\n'
            f'app {APP_PORT} nobody /var/lib/httpgate-bench ^ /usr/bin/python3 /var/lib/httpgate-bench/app.py '
            f'{APP_PORT} 0.5 /var/lib/httpgate-bench/listen\n')


def cg_files(cgs):
    mem = next((d for d in cgs if os.path.exists(d + '/memory.usage_in_bytes') or os.path.exists(d + '/memory.current')),
               None)
    return mem


def cpu_us(cgs):
    for d in cgs:
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


def measure(tmp, leader, cgs):
    """Runs inside the container's network namespace (nsenter -n). The CPU
    figures count the whole container: systemd, journald and the gates."""
    cg = cg_files(cgs)
    res = {'label': 'httpgate under real systemd (nspawn, `Accept=yes`, httpgate.socket)', 'close': [], 'keep': [],
           'bulk': []}
    sv = B.Servers(tmp, [])
    bench = B.Bench(tmp, [])
    try:
        subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
        with open('/proc/sys/net/ipv4/ip_local_port_range', 'w') as f:
            f.write('20000 65000')
        conf = bench.nginx_conf('ct-backend', f'''server {{
        listen 127.0.0.1:{B.BACKEND}; listen [::1]:{B.BACKEND};
        root {tmp}/www;
    }}''')
        sv.start('ct-backend', ['nginx', '-e', f'{tmp}/ct-backend.err', '-c', conf])
        if not B.wait_port(B.BACKEND):
            raise RuntimeError('the backend nginx did not start in the container network')
        status, body, _ = B.http_get(80, '/small.html')
        if status != 200:
            raise RuntimeError(f'httpgate.socket answered {status}: {body[:200]!r}')
        bare = {'label': 'same, the unit with no sandbox at all (no --sandbox, no settings)', 'close': [],
                'keep': [], 'bulk': []}
        for r in range(B.RUNS):
            for close in (True, False):
                for port, row in ((80, res), (81, bare)):
                    log(f'round {r + 1}/{B.RUNS}: port {port} {"new connections" if close else "kept-alive"}')
                    us0 = cpu_us(cgs)
                    w = B.wrk(port, '/small.html', close)
                    B.settle(1.0)
                    us1 = cpu_us(cgs)
                    if us0 is not None and us1 is not None and w['requests']:
                        w['cpu_us'] = (us1 - us0) / w['requests']
                    row['close' if close else 'keep'].append(w)
        for _ in range(B.BULK_RUNS):
            res['bulk'].append(B.curl_speed('http://127.0.0.1:80/big.bin'))
            B.settle(0.2)
        # idle memory: the gate process of one held connection, and the
        # container's cgroup (systemd, journald, the gates) per held connection
        B.settle(2.0)
        before = set(B.all_pids())
        usage0 = B.cg_usage(cg) if cg else None
        status, _, s = B.http_get(80, '/small.html', keep=True)
        time.sleep(0.5)
        new = [p for p in set(B.all_pids()) - before if B.comm(p).startswith('httpgate') and B.alive(p)]
        res['idle_procs'] = len(new)
        res['idle_pss_kib'] = sum(B.pss_kib(p) for p in new)
        socks = [s] + [B.http_get(80, '/small.html', keep=True)[2] for _ in range(B.MEM_CONNS - 1)]
        time.sleep(1.5)
        usage1 = B.cg_usage(cg) if cg else None
        if usage0 is not None and usage1 is not None:
            res['idle_sys_kib'] = (usage1 - usage0) / 1024 / B.MEM_CONNS
        for s in socks:
            s.close()
        B.settle(1.0)
        # app start through the launcher and a transient unit
        res['app'] = {'delay_ms': [], 'total_ms': [], 'errors': 0}
        rec = f'/proc/{leader}/root/var/lib/httpgate-bench/listen'
        for i in range(B.APP_RUNS):
            log(f'app start {i + 1}/{B.APP_RUNS}')
            deadline = time.time() + 15
            while not B.port_closed(APP_PORT) and time.time() < deadline:
                time.sleep(0.05)
            B.settle(0.5)
            try:
                os.unlink(rec)
            except FileNotFoundError:
                pass
            try:
                import socket
                c = socket.create_connection(('127.0.0.1', 80), timeout=30)
                t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
                c.sendall(b'GET /app/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
                first = c.recv(1)
                t1 = time.clock_gettime(time.CLOCK_MONOTONIC)
                rest = c.recv(4096)
                c.close()
                if not (first + rest).startswith(b'HTTP/1.1 200'):
                    raise OSError(f'answer {(first + rest)[:60]!r}')
                listened = float(open(rec).read())
                res['app']['delay_ms'].append((t1 - listened) * 1000)
                res['app']['total_ms'].append((t1 - t0) * 1000)
            except (OSError, ValueError) as e:
                res['app']['errors'] += 1
                res.setdefault('notes', []).append(f'app start under systemd: {e}')
    finally:
        sv.stop_all()
    return {'httpgate': res, 'bare': bare}


def main():
    if len(sys.argv) == 5 and sys.argv[1] == '--measure':
        tmp, leader, cgs = sys.argv[2], int(sys.argv[3]), [d for d in sys.argv[4].split(':') if d]
        print(json.dumps(measure(tmp, leader, cgs)))
        return
    tmp = sys.argv[1]
    cgs = B.make_cgroups(f'httpgate-bench-ct-{os.getpid()}')
    # The default boot target, but nothing else of this machine's may take port 80.
    c = Container('httpgate-bench', parents=(tmp,), target=None, wrap=B.cg_wrap(cgs),
                  mask=('nginx.service', 'apache2.service', 'lighttpd.service'))
    out = {}

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        log('booting the container')
        t0 = time.time()
        why = c.start(before_boot=setup)
        if why:
            raise RuntimeError(why)
        boot_s = time.time() - t0
        r = c.sh('systemd-sysusers >/dev/null 2>&1; systemd-tmpfiles --create >/dev/null 2>&1; '
                 'systemctl daemon-reload && systemctl start httpgate-launch.socket httpgate.socket '
                 'httpgate-bare.socket && ip link set lo up', check=False, timeout=60)
        if r.returncode != 0:
            raise RuntimeError('starting httpgate.socket failed: ' + r.stderr[-500:])
        m = sh(['nsenter', '-t', str(c.leader), '-n', sys.executable, os.path.abspath(__file__), '--measure', tmp,
                str(c.leader), ':'.join(cgs)], timeout=900)
        sys.stderr.write(m.stderr)
        if m.returncode != 0:
            raise RuntimeError(f'measuring failed ({m.returncode}): {m.stderr[-300:]}')
        rows = json.loads(m.stdout)
        failed = c.sh('systemctl list-units --failed --no-legend "httpgate*" | wc -l', check=False).stdout.strip()
        out = {'rows': rows, 'boot_s': boot_s,
               'note': f'Real systemd: the container booted in {boot_s:.1f} s; httpgate.socket and httpgate@.service '
                       f'as installed (sandbox included), names file /etc/httpgate/names with a `@` entry; '
                       f'failed httpgate units afterwards: {failed}.'}
    except KeyboardInterrupt:
        out = {'error': 'interrupted'}
    except Exception as e:  # the row says why; the rest of the bench stands
        out = {'error': str(e)[:300]}
    finally:
        c.stop()
        for top in cgs:
            B.remove_cgroups(top)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
