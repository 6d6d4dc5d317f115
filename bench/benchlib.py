"""What the benchmark drivers share: running a step with its command echoed, finding a
benchmark binary in a build folder, a free loopback port and one HTTP request to a daemon."""
import http.client
import os
import socket
import subprocess
import sys


def run(cmd, env=None):
    """Runs cmd, echoing it and its output (the log is the record), and returns the output."""
    print("$ " + " ".join(cmd), flush=True)
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    sys.stdout.write(out)
    sys.stdout.flush()
    return out


def bench_exe(build, name, who):
    """build/bench/<name>, or exit saying how to build it (who: the calling script's name)."""
    exe = os.path.join(build, "bench", name)
    if not os.access(exe, os.X_OK):
        sys.exit("%s: build %s first (tools/build.sh %s -Dbuildtype=release)" % (who, exe, build))
    return exe


def free_port():
    """A loopback port nobody listens on now (the daemon is started on it next)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(port, method, path, body=None, timeout=600):
    """One request to a daemon on port: (status, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()
