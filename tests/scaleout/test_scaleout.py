#!/usr/bin/env python3
"""Scale-out, end to end (issue 15): a real redis-server, three metalignd replicas sharing it
(--redis) and nginx balancing them round robin, all on loopback in a temporary folder; a single
metalignd without Redis gives the reference answers. Prints TAP.

  1. a replica whose Redis is unreachable starts, says why (/readyz 503) and still answers
     synchronous requests; async jobs and unknown job ids are 503, not 404 or a crash
  2. 12 concurrent human-data requests over the replicas make one upstream download
  3. a job posted through the balancer, polled through it: progress monotone, chunks computed
     by more than one replica, the answer byte for byte the single daemon's (and the shared
     result cache serves the same bytes to a synchronous request on any replica)
  4. a cancel on one replica is seen on the others, and the work stops
  5. a replica killed with SIGKILL mid-job: the job completes, its chunks reclaimed, the
     answer still the single daemon's
  6. Redis restarted empty mid-job: /readyz 503 while it is down, the job then failed with
     the reason; new jobs work again

Usage: test_scaleout.py METALIGND SOURCE_ROOT [REDIS_SERVER NGINX]
"""
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from demo_daemon import free_port  # noqa: E402

METALIGND, ROOT = sys.argv[1], sys.argv[2]
REDIS = sys.argv[3] if len(sys.argv) > 3 else shutil.which("redis-server")
NGINX = sys.argv[4] if len(sys.argv) > 4 else (shutil.which("nginx") or "/usr/sbin/nginx")
DEMO = os.path.join(ROOT, "config", "demo.json")
HUMAN_CSV = os.path.join(ROOT, "tests", "fixtures", "human", "synthetic.csv")
CHUNK = 400            # episodes per chunk: 10 forward calls of 40 episodes x 100 trials
CLAIM_TIMEOUT = 2      # seconds before a silent replica's chunk is taken over
UPSTREAM_DELAY = 1.0   # the human-data server answers this late, so requests overlap
JOB = {"episodes": 12000, "seq_len": 100}   # 30 chunks, seconds of work
SYNC_ROWS = 10 ** 8    # the single daemon answers JOB synchronously (--max-sync-rows)

T0 = time.time()
tmp = tempfile.mkdtemp(prefix="metalign-scaleout-")
procs = []
groups = []  # process groups to take down whole (nginx and its workers)
results = []


def ok(cond, name, diag=None):
    results.append((bool(cond), name, diag))
    print(("ok" if cond else "not ok") + f" {len(results)} - {name}  # {time.time() - T0:.1f} s", flush=True)
    if not cond and diag:
        for line in str(diag).splitlines()[:40]:
            print("# " + line, flush=True)
    return cond


def call(method, url, body=None, timeout=60):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, socket.timeout) as e:
        return 0, str(e).encode()


def jcall(method, url, body=None, timeout=60):
    status, raw = call(method, url, body, timeout)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, {"_raw": raw.decode(errors="replace")}


class Upstream(http.server.BaseHTTPRequestHandler):
    """The human data's server: one CSV with an ETag, answered late; counts its GETs."""
    body = open(HUMAN_CSV, "rb").read()
    count = 0
    lock = threading.Lock()

    def do_GET(self):
        with Upstream.lock:
            Upstream.count += 1
        time.sleep(UPSTREAM_DELAY)
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("ETag", '"v1"')
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


class Daemon:
    def __init__(self, name, extra):
        self.name = name
        self.log_path = os.path.join(tmp, name + ".log")
        cache = os.path.join(tmp, "cache-" + name)
        args = [METALIGND, "--config", DEMO, "--listen", "127.0.0.1:0", "--threads", "1",
                "--cache-dir", cache, "--max-sync-rows", str(SYNC_ROWS)] + extra
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(self.p)
        self.port = None
        log = open(self.log_path, "wb")
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.p.stderr.readline()
            if not line:
                break
            log.write(line)
            m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        log.flush()

        def drain():  # keep the pipe from filling up
            for line in self.p.stderr:
                log.write(line)
                log.flush()
        threading.Thread(target=drain, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"
        # it listens at once and loads after: wait until it is no longer loading
        deadline = time.time() + 60
        while self.port and time.time() < deadline:
            status, j = jcall("GET", self.url + "/readyz", timeout=10)
            if status == 200 or j.get("error", {}).get("code") not in (None, "not_ready"):
                break
            time.sleep(0.05)

    def log(self):
        try:
            return open(self.log_path, errors="replace").read()[-3000:]
        except OSError:
            return ""

    def metrics(self):
        status, raw = call("GET", self.url + "/metrics", timeout=10)
        out = {}
        for line in raw.decode(errors="replace").splitlines():
            if line.startswith("#") or " " not in line:
                continue
            k, v = line.rsplit(" ", 1)
            try:
                out[k] = float(v)
            except ValueError:
                pass
        return out


def start_redis(port):
    d = os.path.join(tmp, "redis")
    os.makedirs(d, exist_ok=True)
    p = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", d, "--daemonize", "no",
                          "--maxmemory-policy", "noeviction"],
                         stdout=open(os.path.join(d, "redis.log"), "ab"), stderr=subprocess.STDOUT)
    procs.append(p)
    deadline = time.monotonic() + 30  # started by the test: bounded in time, not in tries
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return p
        except OSError:
            time.sleep(0.05)
    return p


def start_nginx(port, upstreams):
    d = os.path.join(tmp, "nginx")
    os.makedirs(d, exist_ok=True)
    servers = "\n".join(f"    server 127.0.0.1:{u} max_fails=1 fail_timeout=3s;" for u in upstreams)
    conf = f"""worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream replicas {{
{servers}
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_next_upstream error timeout;
      proxy_connect_timeout 1s;
      proxy_read_timeout 120s;
    }}
  }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    open(path, "w").write(conf)
    # its own process group: nginx's workers outlive a master killed with SIGKILL, and the
    # clean-up below takes the whole group
    p = subprocess.Popen([NGINX, "-c", path, "-p", d, "-e", os.path.join(d, "error.log"),
                          "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(d, "stderr.log"), "wb"), start_new_session=True)
    procs.append(p)
    groups.append(p.pid)
    deadline = time.monotonic() + 30  # started by the test: bounded in time, not in tries
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            time.sleep(0.05)
    return p


def redis_cmd(port, *args):
    """One command over RESP (enough of the protocol for XPENDING's summary)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args))
        f = s.makefile("rb")

        def read():
            line = f.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind == b"*":
                n = int(rest)
                return None if n < 0 else [read() for _ in range(n)]
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else f.read(n + 2)[:-2].decode()
            if kind == b":":
                return int(rest)
            return rest.decode()
        return read()


def pending_of(port, world, consumer):
    """Chunks the consumer holds (read, not completed) in the world's stream."""
    summary = redis_cmd(port, "XPENDING", f"ml:chunks:{world}", "workers")
    for name, count in (summary[3] or []) if isinstance(summary, list) else []:
        if name == consumer:
            return int(count)
    return 0


def world_of(replica):
    for k in replica.metrics():
        m = re.match(r'metalignd_replica_info\{replica="[^"]*",world="([0-9a-f]+)"\}', k)
        if m:
            return m.group(1)
    return None


def total(replicas, name):
    return sum(r.metrics().get(name, 0) for r in replicas)


def wait_job(base, job_id, until=("done", "failed", "cancelled"), timeout=120, progress=None):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        status, j = jcall("GET", f"{base}/v1/jobs/{job_id}", timeout=30)
        if status == 200:
            last = j
            if progress is not None:
                progress.append(j["progress"]["done"])
            if j["status"] in until:
                return j
        time.sleep(0.1)
    return last


def job_result(base, job_id):
    """The answer's bytes exactly as the job carries them (the last field of the record)."""
    status, raw = call("GET", f"{base}/v1/jobs/{job_id}")
    i = raw.find(b'"result":')
    return raw[i + 9:-1] if status == 200 and i >= 0 and raw.endswith(b"}") else b""


def main():
    print("1..25", flush=True)
    redis_port, lb_port, dead_port = free_port(), free_port(), free_port()
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    human_url = f"http://127.0.0.1:{upstream.server_address[1]}/human.csv"

    # 1. Redis unreachable at start-up
    lonely = Daemon("lonely", ["--redis", f"redis://127.0.0.1:{dead_port}/0",
                               "--redis-connect-timeout", "200", "--human-url", human_url])
    status, j = jcall("GET", lonely.url + "/readyz")
    ok(lonely.port and status == 503 and j.get("error", {}).get("code") == "shared_store_unavailable"
       and "unreachable" in j["error"]["message"],
       "Redis unreachable at start-up: the replica serves, /readyz is 503 with the reason", j)
    s1, _ = jcall("POST", lonely.url + "/v1/learning-curves", {"episodes": 8})
    s2, j2 = jcall("POST", lonely.url + "/v1/learning-curves?async=true", {"episodes": 8})
    s3, _ = jcall("GET", lonely.url + "/v1/jobs/" + "0" * 32)
    ok(s1 == 200 and s2 == 503 and s3 == 503,
       "without Redis: synchronous answers 200; async jobs and job lookups 503", (s1, s2, j2, s3))
    lonely.p.send_signal(signal.SIGTERM)
    ok(lonely.p.wait(timeout=30) == 0, "and it stops cleanly (exit 0)", lonely.log())

    redis = start_redis(redis_port)
    common = ["--redis", f"redis://127.0.0.1:{redis_port}/0", "--chunk-episodes", str(CHUNK),
              "--redis-claim-timeout", str(CLAIM_TIMEOUT), "--human-url", human_url]
    replicas = [Daemon(f"r{i}", common + ["--replica-name", f"r{i}"]) for i in range(3)]
    single = Daemon("single", ["--human-url", human_url])
    ok(all(r.port for r in replicas) and single.port, "three replicas and a single daemon start",
       "\n".join(r.log() for r in replicas))
    start_nginx(lb_port, [r.port for r in replicas])
    lb = f"http://127.0.0.1:{lb_port}"
    status, j = jcall("GET", lb + "/readyz")
    ok(status == 200, "the replicas are ready through nginx", j)

    # 2. one upstream download for 12 concurrent requests over the replicas
    answers = []

    def human():
        answers.append(call("GET", lb + "/v1/human/learning-curves")[0])
    threads = [threading.Thread(target=human) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok(answers.count(200) == 12, "12 concurrent human-data requests all answer 200", answers)
    ok(Upstream.count == 1, "they made one upstream download", f"upstream GETs: {Upstream.count}")
    ok(all(r.metrics().get('metalignd_human_cached', 0) == 1 for r in replicas) and
       total(replicas, 'metalignd_human_shared_total{result="shared_copy"}') == 2,
       "every replica holds the copy; two took it from the shared store",
       [r.metrics().get('metalignd_human_shared_total{result="shared_copy"}') for r in replicas])

    # 3. a job through the balancer
    ref_a = call("POST", single.url + "/v1/learning-curves", dict(JOB, seed=11))[1]
    before = [r.metrics().get("metalignd_chunks_computed_total", 0) for r in replicas]
    status, j = jcall("POST", lb + "/v1/learning-curves?async=true", dict(JOB, seed=11))
    ok(status == 202 and "job" in j, "a job posted through nginx is accepted (202)", j)
    progress = []
    final = wait_job(lb, j.get("job"), progress=progress)
    ok(final and final["status"] == "done" and final["progress"]["done"] == JOB["episodes"],
       "polled through nginx, it completes", final)
    ok(len(progress) > 3 and progress == sorted(progress) and progress[-1] == JOB["episodes"],
       f"its progress is monotone ({len(progress)} polls)", progress)
    after = [r.metrics().get("metalignd_chunks_computed_total", 0) for r in replicas]
    busy = [a - b for a, b in zip(after, before)]
    ok(sum(1 for x in busy if x > 0) >= 2 and sum(busy) >= JOB["episodes"] // CHUNK,
       f"its chunks were computed by more than one replica ({busy})", busy)
    got = job_result(lb, j.get("job"))
    ok(got and got == ref_a, f"its answer is the single daemon's, byte for byte ({len(got)} bytes)",
       (got[:200], ref_a[:200]))
    same = [call("POST", r.url + "/v1/learning-curves", dict(JOB, seed=11))[1] for r in replicas]
    ok(all(s == ref_a for s in same), "the same request on every replica: the same bytes at once")

    # 4. cancel on one replica, seen on the others
    status, j = jcall("POST", replicas[0].url + "/v1/learning-curves?async=true",
                      dict(JOB, episodes=60000, seed=13))
    cid = j.get("job")
    wait_job(replicas[0].url, cid, until=("running",), timeout=30)
    time.sleep(0.5)
    s_del, jd = jcall("DELETE", replicas[1].url + "/v1/jobs/" + cid)
    s_get, jg = jcall("GET", replicas[2].url + "/v1/jobs/" + cid)
    ok(s_del == 200 and jd.get("status") == "cancelled" and s_get == 200 and
       jg.get("status") == "cancelled", "a job cancelled on replica 1 is cancelled on replica 2",
       (jd, jg))
    time.sleep(1.0)
    c1 = total(replicas, "metalignd_chunks_computed_total")
    time.sleep(1.5)
    c2 = total(replicas, "metalignd_chunks_computed_total")
    ok(c1 == c2 and total(replicas, "metalignd_chunks_in_flight") == 0,
       "and its work stops on every replica", (c1, c2))

    # 5. a replica killed with SIGKILL mid-job
    ref_b = call("POST", single.url + "/v1/learning-curves", dict(JOB, seed=12))[1]
    status, j = jcall("POST", lb + "/v1/learning-curves?async=true", dict(JOB, seed=12))
    kid = j.get("job")
    victim = None
    world = world_of(replicas[0])
    deadline = time.time() + 30
    while time.time() < deadline and victim is None:
        _, jj = jcall("GET", lb + "/v1/jobs/" + kid)
        if jj.get("progress", {}).get("done", 0) >= JOB["episodes"] // 5:
            # frozen first, so it surely dies holding a chunk (not between two)
            r = replicas[0]
            r.p.send_signal(signal.SIGSTOP)
            if pending_of(redis_port, world, r.name) > 0:
                victim = r
                victim.p.send_signal(signal.SIGKILL)
                victim.p.wait()
            else:
                r.p.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    survivors = [r for r in replicas if r is not victim]
    final = wait_job(lb, kid, timeout=90)
    ok(victim and final and final["status"] == "done",
       f"with replica {victim.name if victim else '?'} killed mid-job, the job completes", final)
    ok(total(survivors, "metalignd_chunks_reclaimed_total") >= 1,
       "the dead replica's chunk was reclaimed by another",
       [r.metrics().get("metalignd_chunks_reclaimed_total") for r in survivors])
    got = job_result(lb, kid)
    ok(got and got == ref_b, "and its answer is still the single daemon's, byte for byte")

    # 6. Redis restarted empty mid-job
    status, j = jcall("POST", lb + "/v1/learning-curves?async=true", dict(JOB, episodes=60000,
                                                                         seed=14))
    lid = j.get("job")
    wait_job(lb, lid, until=("running",), timeout=30)
    redis.send_signal(signal.SIGKILL)
    redis.wait()
    down = None
    deadline = time.time() + 10
    while time.time() < deadline and down != 503:
        down = call("GET", survivors[0].url + "/readyz")[0]
        time.sleep(0.1)
    ok(down == 503, "with Redis down, /readyz is 503", down)
    s_down = call("GET", lb + "/v1/jobs/" + lid)[0]
    ok(s_down == 503, "and a shared job's status is 503 (unavailable), not 404", s_down)
    redis = start_redis(redis_port)
    final = wait_job(lb, lid, until=("failed",), timeout=30)
    ok(final and final["status"] == "failed" and
       final.get("error", {}).get("code") == "shared_state_lost" and
       "restarted" in final["error"].get("message", ""),
       "after Redis restarted empty the job is failed, with the reason", final)
    # a replica that failed to connect in the last 500 ms answers 503 with Retry-After until
    # its next attempt (redis_conn.h): a client that honours it gets through
    deadline = time.time() + 3
    while True:
        status, j = jcall("POST", lb + "/v1/learning-curves?async=true", {"episodes": 800, "seed": 15})
        if status != 503 or time.time() > deadline:
            break
        time.sleep(0.2)
    final = wait_job(lb, j.get("job"), timeout=60) if status == 202 else None
    ok(final and final["status"] == "done", "new jobs run again on the restarted Redis",
       (status, j, final))
    deadline = time.time() + 3  # the keepers ping every second
    while True:
        s_ready = [call("GET", r.url + "/readyz")[0] for r in survivors]
        if all(s == 200 for s in s_ready) or time.time() > deadline:
            break
        time.sleep(0.1)
    ok(all(s == 200 for s in s_ready), "and the replicas are ready again (within 3 s)", s_ready)

    for r in survivors + [single]:
        r.p.send_signal(signal.SIGTERM)
    codes = [r.p.wait(timeout=60) for r in survivors + [single]]
    ok(codes == [0] * len(codes), "the replicas stop cleanly on SIGTERM (exit 0)",
       "\n".join(r.log() for r in survivors))
    upstream.shutdown()


try:
    main()
finally:
    for p in procs:
        if p.poll() is None:
            p.terminate()  # nginx's master stops its workers; redis and replicas exit
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    for g in groups:
        try:
            os.killpg(g, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the group is gone already: the clean stop worked
    if all(r[0] for r in results):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"# logs kept in {tmp}", flush=True)
