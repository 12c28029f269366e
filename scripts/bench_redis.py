#!/usr/bin/python3
"""scripts/bench_redis.py -- helper of `scripts/bench redis` (python3 standard library only).

  bench_redis.py enqueue N SINGLE_N      the ENQUEUE step of ../shared/bench/peers/generic-noop.sh
  bench_redis.py latency                 idle pick-up latency and scheduled lateness
  bench_redis.py summary DIR             the figures, from the JSON lines in DIR

Speaks RESP to Redis itself. Environment: REDIS_PORT (enqueue, latency), WH_BIN, WH_BENCH_ROOT,
WH_LUA_CPATH, WH_ROOT (enqueue), WH_BENCH_FIFO, LAT_N, SCHED_N (latency).
"""
import json
import os
import random
import select
import socket
import statistics
import subprocess
import sys
import time


class Resp:
    def __init__(self, port, host="127.0.0.1", timeout=30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rf = self.sock.makefile("rb")

    @staticmethod
    def encode(cmds):
        buf = bytearray()
        for cmd in cmds:
            buf += b"*%d\r\n" % len(cmd)
            for a in cmd:
                a = a if isinstance(a, bytes) else str(a).encode()
                buf += b"$%d\r\n%s\r\n" % (len(a), a)
        return bytes(buf)

    def send(self, *cmds):
        self.sock.sendall(self.encode(cmds))

    def read(self):
        line = self.rf.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError("redis error: " + rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.rf.read(n + 2)[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("unexpected reply %r" % line)

    def call(self, *cmds):
        self.send(*cmds)
        return [self.read() for _ in cmds]

    def one(self, *cmd):
        return self.call(cmd)[0]


def die(msg):
    print("bench_redis.py: " + msg, file=sys.stderr)
    sys.exit(1)


def pct(xs, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(xs)
    k = max(1, -(-len(s) * p // 100))  # ceil(n * p / 100)
    return s[int(k) - 1]


# ---- enqueue -----------------------------------------------------------------------------------

def timed_lua(mode, n, batch, uri):
    """Runs bench_redis_client.lua; seconds from its "ready" line to its "done" line."""
    env = dict(os.environ, LUA_CPATH=os.environ["WH_LUA_CPATH"] + ";;")
    p = subprocess.Popen(
        ["lua5.4", os.path.join(os.environ["WH_ROOT"], "scripts", "bench_redis_client.lua"),
         mode, str(n), str(batch), uri, os.environ["WH_BENCH_ROOT"]],
        stdout=subprocess.PIPE, env=env)
    marks = {}
    for line in p.stdout:
        marks[line.strip().decode()] = time.monotonic()
    if p.wait() != 0 or "ready" not in marks or "done" not in marks:
        die("the Lua client (%s) failed" % mode)
    return marks["done"] - marks["ready"]


def cmd_enqueue(n, single_n):
    """Leaves N NoopWorker jobs in queue:default; prints the enqueue rates as one JSON line.
    1. SINGLE_N jobs, one c:enqueue each (Lua client), then FLUSHDB;
    2. N jobs by c:enqueue_bulk in batches of 1000 (Lua client), then FLUSHDB;
    3. N jobs by `workerhost enqueue NoopWorker --bulk FILE` (one process, timed whole: start,
       loading the scripts, reading and checking FILE, one pipelined push); left queued."""
    port = int(os.environ["REDIS_PORT"])
    uri = "redis://127.0.0.1:%d/0" % port
    r = Resp(port)
    r.one("FLUSHDB")
    out = {}
    if single_n > 0:
        s = timed_lua("single", single_n, 1, uri)
        got = r.one("LLEN", "queue:default")
        if got != single_n:
            die("single enqueue: queue has %s, expected %d" % (got, single_n))
        r.one("FLUSHDB")
        out.update(wh_enqueue_single_n=single_n, wh_enqueue_single_s=round(s, 4),
                   wh_enqueue_single_per_s=round(single_n / s, 1))
    s = timed_lua("bulk", n, 1000, uri)
    got = r.one("LLEN", "queue:default")
    if got != n:
        die("Lua enqueue_bulk: queue has %s, expected %d" % (got, n))
    r.one("FLUSHDB")
    out.update(wh_enqueue_lua_bulk_s=round(s, 4), wh_enqueue_lua_bulk_per_s=round(n / s, 1))

    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "wh-bench-bulk-%d.jsonl" % os.getpid())
    with open(path, "w") as f:
        f.write("".join("[%d]\n" % i for i in range(n)))
    t = time.monotonic()
    rc = subprocess.call([os.environ["WH_BIN"], "--root", os.environ["WH_BENCH_ROOT"], "enqueue",
                          "NoopWorker", "--bulk", path], stdout=subprocess.DEVNULL,
                         env=dict(os.environ, REDIS_URL=uri))
    s = time.monotonic() - t
    os.unlink(path)
    if rc != 0:
        die("workerhost enqueue --bulk exited %d" % rc)
    got = r.one("LLEN", "queue:default")
    if got != n:
        die("workerhost enqueue --bulk: queue has %s, expected %d" % (got, n))
    out.update(wh_enqueue_cli_bulk_s=round(s, 4), wh_enqueue_cli_bulk_per_s=round(n / s, 1),
               job_payload_bytes=len(r.one("LINDEX", "queue:default", 0)))
    print(json.dumps(out, sort_keys=True))


# ---- latency -----------------------------------------------------------------------------------

def payload(seq, now, scheduled=False):
    jid = "%024x" % random.getrandbits(96)
    p = '{"class":"LatencyWorker","args":[%d],"retry":false,"queue":"default","jid":"%s","created_at":%.6f' % (
        seq, jid, now)
    if not scheduled:
        p += ',"enqueued_at":%.6f' % now
    return p + "}"


class Fifo:
    """The FIFO the LatencyWorker writes "<seq>\\n" to; opened read-write so that it never reports
    end-of-file between writers."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.buf = b""

    def wait_lines(self, timeout):
        """Blocks up to timeout for at least one whole line; returns ([seq...], wall time, mono time)
        of the wake-up."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return [], None, None
            rd, _, _ = select.select([self.fd], [], [], left)
            if not rd:
                continue
            mono, wall = time.monotonic(), time.time()
            self.buf += os.read(self.fd, 65536)
            if b"\n" in self.buf:
                *lines, self.buf = self.buf.split(b"\n")
                return [int(x) for x in lines], wall, mono


def cmd_latency():
    port = int(os.environ["REDIS_PORT"])
    lat_n = int(os.environ.get("LAT_N", "200"))
    sched_n = int(os.environ.get("SCHED_N", "200"))
    r = Resp(port)
    fifo = Fifo(os.environ["WH_BENCH_FIFO"])
    # the host is up once it has registered and its blocking fetch connection is waiting
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if r.one("SCARD", "processes") >= 1 and r.one("INFO", "clients").find(b"blocked_clients:0") < 0:
            break
        time.sleep(0.05)
    else:
        die("the host did not start fetching within 20 s")
    r.one("SADD", "queues", "default")
    time.sleep(0.5)

    # 1. idle pick-up: one job at a time, after 20-80 ms of idleness
    pick = []
    for seq in range(1, lat_n + 1):
        time.sleep(random.uniform(0.02, 0.08))
        t0 = time.monotonic()
        r.send(("LPUSH", "queue:default", payload(seq, time.time())))
        seqs, _, mono = fifo.wait_lines(10)
        r.read()
        if seqs != [seq]:
            die("pick-up: expected job %d, the worker reported %r" % (seq, seqs))
        pick.append(mono - t0)

    # 2. scheduled: SCHED_N jobs ZADDed at once, due 1 s from now and then every 20-40 ms
    time.sleep(0.2)
    now = time.time()
    due, at = {}, now + 1.0
    cmds = []
    for i in range(sched_n):
        seq = 1000000 + i
        at += random.uniform(0.02, 0.04)
        due[seq] = at
        cmds.append(("ZADD", "schedule", "%.6f" % at, payload(seq, now, scheduled=True)))
    r.send(*cmds)
    for _ in cmds:
        r.read()
    late = {}
    while len(late) < sched_n:
        seqs, wall, _ = fifo.wait_lines(10)
        if not seqs:
            die("scheduled: only %d of %d jobs ran" % (len(late), sched_n))
        for s in seqs:
            late[s] = wall - due[s]
    lv = list(late.values())
    ms = lambda x: round(x * 1000, 3)
    out = dict(
        pickup_n=lat_n, pickup_ms_p50=ms(pct(pick, 50)), pickup_ms_p90=ms(pct(pick, 90)),
        pickup_ms_p99=ms(pct(pick, 99)), pickup_ms_min=ms(min(pick)), pickup_ms_max=ms(max(pick)),
        sched_n=sched_n, sched_late_ms_p50=ms(pct(lv, 50)), sched_late_ms_p90=ms(pct(lv, 90)),
        sched_late_ms_p99=ms(pct(lv, 99)), sched_late_ms_min=ms(min(lv)), sched_late_ms_max=ms(max(lv)),
        processed=int(r.one("GET", "stat:processed") or 0), failed=int(r.one("GET", "stat:failed") or 0),
    )
    print(json.dumps(out, sort_keys=True))


# ---- summary -----------------------------------------------------------------------------------

def load(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = [json.loads(l) for l in f if l.strip()]
    return rows


def med(rows, key):
    xs = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return (statistics.median(xs), len(xs)) if xs else (None, 0)


def fmt(v, unit="", nd=0):
    if v is None:
        return "n/a"
    return ("{:,.%df}" % nd).format(v) + unit


def cmd_summary(d):
    sets = [("workerhost c=2", load(os.path.join(d, "wh-c2.jsonl"))),
            ("workerhost c=4", load(os.path.join(d, "wh-c4.jsonl"))),
            ("sidekiq c=10", load(os.path.join(d, "sidekiq.jsonl")))]
    failed = {}  # results name -> reps that failed without (or with) a result line
    if os.path.exists(os.path.join(d, "failed.txt")):
        with open(os.path.join(d, "failed.txt")) as f:
            for l in f:
                failed.setdefault(l.split()[0], []).append(l.strip())
    names = {"workerhost c=2": "wh-c2", "workerhost c=4": "wh-c4", "sidekiq c=10": "sidekiq"}
    sets = [(n, rows) for n, rows in sets if rows or failed.get(names[n])]
    ok = {n: [r for r in rows if r.get("status") == "ok"] for n, rows in sets}
    tried = {n: max(len(rows), len(rows) + sum(1 for x in failed.get(names[n], [])
                                                 if not any(str(r.get("rep")) == x.split()[2] for r in rows)))
             for n, rows in sets}
    sk = ok.get("sidekiq c=10", [])
    sk_rate = med(sk, "jobs_per_s")[0]

    print("\n1. Drain rate, %s no-op jobs queued before the start (medians of interleaved reps; "
          "each rep on a fresh redis-server)" % fmt(next((r.get("target") for _, rows in sets for r in rows), None)))
    print("   %-16s %5s %12s %14s %14s %8s %9s %10s %s" % (
        "system", "reps", "jobs/s", "jobs/s steady", "to count jobs/s", "boot s", "done s", "peak RSS",
        "vs sidekiq"))
    for name, rows in sets:
        good = ok[name]
        rate, n = med(good, "jobs_per_s")
        ratio = "%.2fx" % (rate / sk_rate) if rate and sk_rate and not name.startswith("sidekiq") else ""
        rss = med(good, "worker_peak_rss_kb_sum")[0]
        print("   %-16s %2d/%-2d %12s %14s %14s %8s %9s %10s %s" % (
            name, n, tried[name], fmt(rate), fmt(med(good, "steady_jobs_per_s")[0]),
            fmt(med(good, "jobs_per_s_to_count")[0]), fmt(med(good, "boot_s")[0], nd=2),
            fmt(med(good, "done_s")[0], nd=2), fmt(rss and rss / 1024, " MiB", 1), ratio))
    print("   jobs/s = JOBS / (done - process start): boot included. workerhost: done = first 50 ms poll with\n"
          "   stat:processed == JOBS and queue:default empty (it counts at once). Sidekiq: done = first poll\n"
          "   with queue:default empty (it adds to stat:processed only on its 5 s heartbeat; 'to count' is\n"
          "   JOBS / time until stat:processed == JOBS). 'steady' leaves boot out. Ratios use Sidekiq's\n"
          "   drain figure. Peak RSS = VmHWM of the host / sidekiq process at done.")
    print("   CPU from start to done, % of one core (medians), and Redis commands per job (in scripts too):")
    for name, _ in sets:
        print("     %-16s process %5s%%   redis-server %4s%%   %s commands/job" % (
            name, fmt(med(ok[name], "worker_cpu_pct")[0]), fmt(med(ok[name], "redis_cpu_pct")[0]),
            fmt(med(ok[name], "redis_cmds_per_job")[0], nd=2)))
    for name, rows in sets:
        if len(ok[name]) < tried[name]:
            print("   WARNING: %s: %d of %d rep(s) failed (left out of the medians): %s" % (
                name, tried[name] - len(ok[name]), tried[name],
                "; ".join([str(r.get("status")) for r in rows if r.get("status") != "ok"] + failed.get(names[name], []))))

    wh = [r for name, rows in sets if name.startswith("workerhost") for r in rows]
    print("\n2. Enqueue rate (jobs/s; median over every rep's enqueue step, count in brackets)")
    rows = [
        ("workerhost single, Lua client c:enqueue, one job per call", wh, "wh_enqueue_single_per_s"),
        ("workerhost bulk, Lua client c:enqueue_bulk, 1,000 per call", wh, "wh_enqueue_lua_bulk_per_s"),
        ("workerhost bulk, `workerhost enqueue --bulk FILE` (1 process, start incl.)", wh,
         "wh_enqueue_cli_bulk_per_s"),
        ("sidekiq single, Sidekiq::Client.push (perform_async)", [r for n, x in sets if n.startswith("sidekiq")
                                                                  for r in x], "enqueue_single_per_s"),
        ("sidekiq bulk, Sidekiq::Client.push_bulk, 1,000 per call", [r for n, x in sets if n.startswith("sidekiq")
                                                                     for r in x], "enqueue_bulk_per_s"),
    ]
    vals = {}
    for label, rs, key in rows:
        v, n = med(rs, key)
        vals[key] = v
        if rs:
            print("   %-78s %10s  [%d]" % (label, fmt(v), n))
    for a, b, what in (("wh_enqueue_single_per_s", "enqueue_single_per_s", "single"),
                       ("wh_enqueue_lua_bulk_per_s", "enqueue_bulk_per_s", "bulk (Lua client vs push_bulk)")):
        if vals.get(a) and vals.get(b):
            print("   ratio workerhost / sidekiq, %s: %.2fx" % (what, vals[a] / vals[b]))
    print("   single: timed inside the client process after connecting (Lua: from its 'ready' line to its\n"
          "   'done' line; Ruby: enqueue.rb's own clock); jobs are NoopWorker with args [i].")

    lat = load(os.path.join(d, "latency.jsonl"))
    if lat:
        m = lambda k: statistics.median(r[k] for r in lat)
        print("\n3. Idle pick-up latency, workerhost c=2 (%d run(s) of %d jobs, one at a time, 20-80 ms apart;"
              "\n   median over the runs of each run's percentile)" % (len(lat), lat[0]["pickup_n"]))
        print("   p50 %.2f ms   p90 %.2f ms   p99 %.2f ms   (min %.2f, max %.2f over all runs)" % (
            m("pickup_ms_p50"), m("pickup_ms_p90"), m("pickup_ms_p99"), min(r["pickup_ms_min"] for r in lat),
            max(r["pickup_ms_max"] for r in lat)))
        print("   = from just before LPUSH queue:default is sent to the moment the LatencyWorker's first act in\n"
              "   perform (a line written to a FIFO) wakes the pusher; one clock (the pusher's) for both ends.")
        print("\n4. Scheduled lateness, workerhost c=2 (%d run(s) of %d jobs ZADDed to schedule, due 20-40 ms apart)"
              % (len(lat), lat[0]["sched_n"]))
        print("   p50 %.2f ms   p90 %.2f ms   p99 %.2f ms   (min %.2f, max %.2f over all runs)" % (
            m("sched_late_ms_p50"), m("sched_late_ms_p90"), m("sched_late_ms_p99"),
            min(r["sched_late_ms_min"] for r in lat), max(r["sched_late_ms_max"] for r in lat)))
        print("   = perform start (FIFO line, as above; wall clock) - the job's score in schedule.")
    if failed.get("latency"):
        print("   WARNING: latency probes failed: " + "; ".join(failed["latency"]))
    print("\n5. Peak RSS: see the table in 1 (median VmHWM at done).")

    # how steady the machine was: the peers' calibration loop, timed before every drain
    cal = [r["calib_cpu_ms"] for _, rows in sets for r in rows if isinstance(r.get("calib_cpu_ms"), (int, float))]
    if cal:
        print("\nmachine drift: the peers' fixed Python calibration loop took %.0f / %.0f / %.0f ms (min / median /"
              " max\nover the %d drains; ~90 ms when the machine is quiet). Compare figures within one run only."
              % (min(cal), statistics.median(cal), max(cal), len(cal)))
    # what the hosts logged at warn and above (the bench runs them at warn)
    for c in ("2", "4"):
        path = os.path.join(d, "wh-c%s-host.log" % c)
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                lines = [l.rstrip("\n") for l in f if l.strip()]
            if lines:
                print("workerhost c=%s logged %d line(s) at warn or above over its drains; first: %s" % (
                    c, len(lines), lines[0][:200]))


def main():
    if len(sys.argv) < 2:
        die(__doc__)
    what = sys.argv[1]
    if what == "enqueue":
        cmd_enqueue(int(sys.argv[2]), int(sys.argv[3]))
    elif what == "latency":
        cmd_latency()
    elif what == "summary":
        cmd_summary(sys.argv[2])
    else:
        die("unknown command " + what)


if __name__ == "__main__":
    main()
