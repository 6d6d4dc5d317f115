"""What the side-by-side drivers (run_forward.py, run_replay.py, run_curves_ml.py) share:
running a step with its command echoed, and finding a benchmark binary in a build folder."""
import os
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
