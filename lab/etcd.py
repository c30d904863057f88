"""The lab's etcd (`kroute lab up --store etcd`): one real etcd in namespace NAME-etcd.

It sits on the lab LAN at 172.31.K.253 (client URL http://172.31.K.253:2379; its peer
port listens on the namespace's loopback only), keeps its data under
/run/kroute/lab/NAME/etcd and logs to NAME/etcd.log. Its PID is recorded in lab.json like
the daemons', so `lab down` stops it by PID (after the nodes, which still talk to it).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lab import net, procs
from lab.plan import LabError, LabPlan
from lab.procs import Proc

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_HEALTH = (
    "import json, sys, urllib.request\n"
    "try:\n"
    "    body = urllib.request.urlopen(sys.argv[1] + '/health', timeout=1).read()\n"
    "    sys.exit(0 if json.loads(body).get('health') == 'true' else 1)\n"
    "except Exception:\n"
    "    sys.exit(1)\n"
)


def log_path(plan: LabPlan) -> str:
    return f"{plan.state_dir}/etcd.log"


def argv(plan: LabPlan) -> list[str]:
    """etcd as a single-member cluster, run in the lab's etcd namespace."""
    etcd = shutil.which("etcd")
    if etcd is None:
        raise LabError("etcd not found on PATH; install Debian's etcd-server (apt install etcd)")
    peer = "http://127.0.0.1:2380"
    member = f"{plan.name}-etcd"
    return [
        *net.nsenter(plan.etcd_ns), etcd, "--name", member, "--data-dir", plan.etcd_dir,
        "--listen-client-urls", plan.etcd_url, "--advertise-client-urls", plan.etcd_url,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"{member}={peer}", "--initial-cluster-state", "new",
        "--logger", "zap", "--log-outputs", "stderr",
    ]  # fmt: skip


def start(plan: LabPlan, record: Callable[[Proc], None], say: Callable[[str], None]) -> Proc:
    """Build NAME-etcd on the LAN, start etcd, record its PID at once, wait until healthy."""
    net.join_lan(plan, plan.etcd_ns, "etcd0", plan.etcd_ip)
    Path(plan.etcd_dir).mkdir(parents=True, exist_ok=True)
    proc = procs.start(argv(plan), log_path(plan), dict(os.environ), plan.state_dir)
    record(proc)
    deadline = time.monotonic() + START_TIMEOUT
    while not healthy(plan):
        if not procs.is_alive(proc):
            raise LabError(f"etcd of lab {plan.name} exited; see {log_path(plan)}")
        if time.monotonic() >= deadline:
            raise LabError(
                f"etcd of lab {plan.name} at {plan.etcd_url} is not healthy after "
                f"{START_TIMEOUT:g}s; see {log_path(plan)}"
            )
        time.sleep(0.2)
    say(f"etcd: {plan.etcd_ns} {plan.etcd_url}, pid {proc.pid}, data {plan.etcd_dir}")
    return proc


def healthy(plan: LabPlan) -> bool:
    """etcd answers /health with true, asked from inside its namespace."""
    try:
        net.run([*net.nsenter(plan.etcd_ns), sys.executable, "-c", _HEALTH, plan.etcd_url])
    except LabError:
        return False
    return True


def stop(plan: LabPlan, proc: Proc, say: Callable[[str], None]) -> None:
    """SIGTERM etcd (SIGKILL after STOP_TIMEOUT); LabError if it survives even that."""
    if not procs.is_alive(proc):
        return
    say(f"etcd: sending SIGTERM to pid {proc.pid}")
    stopped = procs.stop_tree(proc, signal.SIGTERM, STOP_TIMEOUT)
    if stopped.stuck:
        raise LabError(f"etcd of lab {plan.name} (pid {proc.pid}) survived SIGKILL; check `ps`")
