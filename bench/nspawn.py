#!/usr/bin/python3
"""bench/nspawn.py TMP: the "httpgate under real systemd" row of `make bench`.

Boots this machine's own root as a container (overlayfs: lower /, upper in
TMP; `systemd-nspawn --boot --private-network`, as the test suite does),
installs httpgate into it with `make install DESTDIR=`, starts the real
httpgate.socket (port 80, Accept=yes) and httpgate-launch.socket, and
measures from inside the container's private network (nsenter -n): the
backend nginx and the clients are the host's programs in that network. The
container runs in its own memory cgroup, so the system-wide idle figure
includes what systemd itself keeps per connection unit. Prints one JSON
object on stdout; tears everything down (nspawn stopped by PID, overlay
unmounted, TMP/ct removed) whatever happens.
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
import run as B  # noqa: E402  (bench/run.py: the shared measuring helpers)

APP_PORT = 18221


def log(*a):
    print('bench (systemd):', *a, file=sys.stderr, flush=True)


def sh(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def leader_of(nspawn_pid):
    try:
        for t in os.listdir(f'/proc/{nspawn_pid}/task'):
            kids = open(f'/proc/{nspawn_pid}/task/{t}/children').read().split()
            if kids:
                return int(kids[0])
    except OSError:
        pass
    return None


def in_ct(leader, cmd, timeout=60):
    return sh(['nsenter', '-t', str(leader), '-a', 'sh', '-c', cmd], timeout=timeout)


def setup(tmp, ct):
    rootfs = f'{ct}/root'
    for d in ('upper', 'work', 'root'):
        os.makedirs(f'{ct}/{d}')
    subprocess.run(['mount', '-t', 'overlay', 'overlay', '-o', f'lowerdir=/,upperdir={ct}/upper,workdir={ct}/work',
                    rootfs], check=True)
    r = sh(['make', '-s', '-C', ROOT, 'install', f'DESTDIR={rootfs}', 'PREFIX=/usr'])
    if r.returncode != 0:
        raise RuntimeError('make install into the container failed: ' + r.stderr[-500:])
    app = f'{rootfs}/var/lib/httpgate-bench'
    os.makedirs(app, exist_ok=True)
    os.chmod(app, 0o1777)
    shutil.copy(f'{HERE}/app.py', f'{app}/app.py')
    os.chmod(f'{app}/app.py', 0o644)
    # nothing else of this machine's may take port 80 in the container
    os.makedirs(f'{rootfs}/etc/systemd/system', exist_ok=True)
    for unit in ('nginx.service', 'apache2.service', 'lighttpd.service'):
        link = f'{rootfs}/etc/systemd/system/{unit}'
        if not os.path.lexists(link):
            os.symlink('/dev/null', link)
    # the same gate without the sandbox, to show what the sandbox costs per connection
    with open(f'{rootfs}/etc/systemd/system/httpgate-bare.socket', 'w') as f:
        f.write('[Socket]\nListenStream=81\nBindIPv6Only=both\nAccept=yes\nMaxConnections=1024\n'
                'TriggerLimitIntervalSec=0\nTriggerLimitBurst=0\n')
    with open(f'{rootfs}/etc/systemd/system/httpgate-bare@.service', 'w') as f:
        f.write('[Unit]\nCollectMode=inactive-or-failed\n[Service]\nExecStart=/usr/bin/httpgate /etc/httpgate/names\n'
                'SuccessExitStatus=1 2\nUser=httpgate\nGroup=httpgate\n')
    os.makedirs(f'{rootfs}/etc/httpgate', exist_ok=True)
    with open(f'{rootfs}/etc/httpgate/names', 'w') as f:
        f.write(f'@ {B.BACKEND} nobody / ^ /bin/false\n'
                f'app {APP_PORT} nobody /var/lib/httpgate-bench ^ /usr/bin/python3 /var/lib/httpgate-bench/app.py '
                f'{APP_PORT} 0.5 /var/lib/httpgate-bench/listen\n')


def boot(ct, cgs, name):
    wrap = B.cg_wrap(cgs)
    out = open(f'{ct}/console.log', 'wb')
    p = subprocess.Popen(wrap + ['systemd-nspawn', '-q', '-D', f'{ct}/root', '--boot', '--private-network',
                                 '--register=no', '--keep-unit', '-M', name],
                         stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    deadline = time.time() + 60
    leader = None
    while time.time() < deadline and p.poll() is None:
        leader = leader_of(p.pid)
        if leader:
            st = in_ct(leader, 'systemctl is-system-running 2>/dev/null', timeout=10).stdout.strip()
            if st in ('running', 'degraded'):
                return p, leader
        time.sleep(0.2)
    raise RuntimeError(f'the container did not boot (state: {p.poll()}); see {ct}/console.log')


def teardown(p, ct):
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)  # nspawn powers the container off
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if os.path.ismount(f'{ct}/root'):
        if sh(['umount', f'{ct}/root']).returncode != 0:
            sh(['umount', '-l', f'{ct}/root'])
    shutil.rmtree(ct, ignore_errors=True)


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
        bare = {'label': 'same, the unit without its sandbox (no `Protect*`, `Private*`, filters)', 'close': [],
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
    ct = f'{tmp}/ct'
    cgs = B.make_cgroups(f'httpgate-bench-ct-{os.getpid()}')
    p = None
    out = {}

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        setup(tmp, ct)
        log('booting the container')
        t0 = time.time()
        p, leader = boot(ct, cgs, f'httpgate-bench-{os.getpid()}')
        boot_s = time.time() - t0
        r = in_ct(leader, 'systemd-sysusers >/dev/null 2>&1; systemd-tmpfiles --create >/dev/null 2>&1; '
                          'systemctl daemon-reload && systemctl start httpgate-launch.socket httpgate.socket '
                          'httpgate-bare.socket && '
                          'ip link set lo up')
        if r.returncode != 0:
            raise RuntimeError('starting httpgate.socket failed: ' + r.stderr[-500:])
        m = sh(['nsenter', '-t', str(leader), '-n', sys.executable, os.path.abspath(__file__), '--measure', tmp,
                str(leader), ':'.join(cgs)], timeout=900)
        sys.stderr.write(m.stderr)
        if m.returncode != 0:
            raise RuntimeError(f'measuring failed ({m.returncode}): {m.stderr[-300:]}')
        rows = json.loads(m.stdout)
        failed = in_ct(leader, 'systemctl list-units --failed --no-legend "httpgate*" | wc -l').stdout.strip()
        out = {'rows': rows, 'boot_s': boot_s,
               'note': f'Real systemd: the container booted in {boot_s:.1f} s; httpgate.socket and httpgate@.service '
                       f'as installed (sandbox included), names file /etc/httpgate/names with a `@` entry; '
                       f'failed httpgate units afterwards: {failed or "?"}.'}
    except KeyboardInterrupt:
        out = {'error': 'interrupted'}
    except Exception as e:  # the row says why; the rest of the bench stands
        out = {'error': str(e)[:300]}
    finally:
        teardown(p, ct)
        for top in cgs:
            B.remove_cgroups(top)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
