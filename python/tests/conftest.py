"""Fixtures for the kvfabric Python tests: real local clusters.

A `cluster` is `kvf-launch local` of this build (coordinator plus agents on
host memory over UCX, every port picked free by the kernel), started as a
child process; its "cluster up" lines give the coordinator address, the token
file and each agent's pid. It is stopped with SIGTERM (kvf-launch stops its
daemons in order) and, should that not finish, every daemon is killed by pid,
so a failing test leaves nothing running.

KVF_BUILD_DIR (set by ctest) names the build tree; by default the release one.
"""

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("KVF_BUILD_DIR", REPO / "build" / "release"))
LAUNCH = BUILD / "tools" / "launch" / "kvf-launch"

sys.path.insert(0, str(BUILD / "python"))


@dataclass
class Agent:
    node: int
    pid: int
    control: str
    log: str


@dataclass
class Cluster:
    coordinator: str
    token: str
    token_file: str
    directory: str
    coordinator_pid: int
    agents: list = field(default_factory=list)
    process: subprocess.Popen = None

    def env(self):
        """The environment kvf-launch gives a command it runs."""
        env = dict(os.environ)
        env.update(KVF_COORDINATOR=self.coordinator, KVF_TOKEN=self.token,
                   KVF_TOKEN_FILE=self.token_file, KVF_CLUSTER_DIR=self.directory)
        return env

    def client(self, **kwargs):
        import kvfabric
        return kvfabric.Client(self.coordinator, token=self.token, **kwargs)

    def kill_agent(self, index):
        """SIGKILLs agent `index` (a crash: it does not leave the cluster)."""
        os.kill(self.agents[index].pid, signal.SIGKILL)

    def stop(self):
        if self.process is None:
            return
        pids = [self.coordinator_pid] + [a.pid for a in self.agents]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in pids:  # whatever kvf-launch did not stop
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process = None


_LINE = {
    "up": re.compile(r"cluster up in (\S+)"),
    "coordinator": re.compile(r"coordinator\s+grpc=(\S+) .*pid=(\d+)"),
    "token": re.compile(r"token file\s+(\S+)"),
    "agent": re.compile(r"agent\s+node=(\d+) control=(\S+) .*pid=(\d+) log=(\S+)"),
}


def start_cluster(agents=3, replication=2, host_bytes="256M", extra=()):
    """Starts `kvf-launch local` and returns the Cluster once every agent is
    active (kvf-launch prints its lines only then)."""
    if not LAUNCH.exists():
        pytest.fail(f"{LAUNCH} is missing: build the release preset first")
    cmd = [str(LAUNCH), "local", f"--agents={agents}", f"--replication={replication}",
           f"--host_bytes={host_bytes}", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    c = Cluster(coordinator="", token="", token_file="", directory="", coordinator_pid=0,
                process=proc)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if m := _LINE["up"].search(line):
                c.directory = m.group(1)
            elif m := _LINE["coordinator"].search(line):
                c.coordinator, c.coordinator_pid = m.group(1), int(m.group(2))
            elif m := _LINE["token"].search(line):
                c.token_file = m.group(1)
            elif m := _LINE["agent"].search(line):
                c.agents.append(Agent(int(m.group(1)), int(m.group(3)), m.group(2), m.group(4)))
                if len(c.agents) == agents:
                    break
        if len(c.agents) != agents or not c.coordinator:
            raise RuntimeError("kvf-launch did not come up:\n" + "".join(lines))
        c.token = Path(c.token_file).read_text().strip()
    except BaseException:
        c.stop()
        raise
    # Keep draining kvf-launch's output so it never blocks on a full pipe.
    import threading
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return c


@pytest.fixture(scope="module")
def cluster():
    """One 3-agent cluster shared by a test module."""
    c = start_cluster()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def fresh_cluster():
    """A cluster of its own, for tests that kill nodes."""
    c = start_cluster()
    try:
        yield c
    finally:
        c.stop()
