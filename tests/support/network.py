"""Test hosts on their own network namespaces, with links that can be cut and degraded.

Topology, made and removed by :class:`TestNetwork` (needs root and iproute2):

    root namespace: bridge ``bw<tag>br`` 10.<a>.<b>.1/24  <- the broker listens here
        |-- veth ``bw<tag><i>d`` ==== ``bw<tag><i>D`` in namespace ``bw<tag>-<name>``: 10.<a>.<b>.<10+i>/24
        `-- veth ``bw<tag><i>m`` ==== ``bw<tag><i>M`` in the same namespace: 10.<c>.<i>.2/30

The first pair is the host's *data link*: every Kafka connection of a client
in the namespace crosses it, so :meth:`Host.cut` (link down) and
:meth:`Host.degrade` (``tc netem``) act on exactly that host's traffic to the
broker. The second pair is a *management link* on another subnet, never cut,
so the test can still read the host's ``/ready`` and ``/metrics`` during an
outage. Nothing leaves these addresses and loopback.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

# The slow link of Host.degrade where netem is missing: well under the
# detector's traffic at 2,000 beats/s (about 9 Mbit/s each way), so its queue fills.
SLOW_LINK_KBIT = 2000


def _ip(*args: str, namespace: str | None = None) -> None:
    command = ["ip", *args] if namespace is None else ["ip", "-n", namespace, *args]
    subprocess.run(command, check=True, capture_output=True, text=True)


def _tc(*args: str, namespace: str | None = None) -> None:
    prefix = [] if namespace is None else ["ip", "netns", "exec", namespace]
    subprocess.run([*prefix, "tc", *args], check=True, capture_output=True, text=True)


def network_unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network-fault tests need root (ip netns, veth, tc netem)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"network-fault tests need iproute2's `{tool}` (Debian package iproute2)"
    probe = f"bwprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"cannot create a network namespace: {exc.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


@dataclass
class Host:
    """One test host: a namespace with a data link to the broker's bridge and a management link."""

    name: str
    namespace: str
    address: str  # on the data subnet, where the broker is
    management_address: str  # reachable from the root namespace even while the data link is cut
    data_root_end: str
    data_host_end: str

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def cut(self) -> None:
        """Take the data link down: the host's packets to and from the broker vanish."""
        _ip("link", "set", self.data_root_end, "down")

    def restore(self) -> None:
        """Bring the data link back up, without any degradation."""
        _ip("link", "set", self.data_root_end, "up")

    def degrade(self, delay_ms: int, jitter_ms: int, loss_pct: float) -> str:
        """Delay, jitter and loss on both directions of the data link; say what was applied.

        ``tc netem`` where the kernel has it. Kernels built without ``sch_netem``
        ("Specified qdisc kind is unknown") get the closest real fault that
        stays in the kernel: a token-bucket link (``tbf``) at ``SLOW_LINK_KBIT``
        whose queue holds ``delay_ms`` of traffic and drops what does not fit,
        so packets wait about that long and are lost when the link is full.
        """
        netem = ["netem", "delay", f"{delay_ms}ms", f"{jitter_ms}ms", "loss", f"{loss_pct}%"]
        try:
            self._qdisc(netem)
        except subprocess.CalledProcessError as exc:
            if "unknown" not in exc.stderr:
                raise
            tbf = [
                "tbf",
                "rate",
                f"{SLOW_LINK_KBIT}kbit",
                "burst",
                "16kb",
                "latency",
                f"{delay_ms}ms",
            ]
            self._qdisc(tbf)
            return f"tbf {SLOW_LINK_KBIT} kbit/s, {delay_ms} ms queue (kernel has no netem)"
        return f"netem {delay_ms} ms ± {jitter_ms} ms, {loss_pct}% loss"

    def _qdisc(self, spec: list[str]) -> None:
        _tc("qdisc", "replace", "dev", self.data_root_end, "root", *spec)
        _tc("qdisc", "replace", "dev", self.data_host_end, "root", *spec, namespace=self.namespace)

    def heal(self) -> None:
        """Remove the degradation."""
        for device, namespace in ((self.data_root_end, None), (self.data_host_end, self.namespace)):
            subprocess.run(
                [
                    *([] if namespace is None else ["ip", "netns", "exec", namespace]),
                    "tc",
                    "qdisc",
                    "del",
                    "dev",
                    device,
                    "root",
                ],
                check=False,
                capture_output=True,
            )


class TestNetwork:
    """A bridge for the broker and namespaced hosts around it; removed on :meth:`close`."""

    __test__ = False  # a helper, not a pytest class

    def __init__(self) -> None:
        reason = network_unavailable_reason()
        if reason:
            pytest.skip(reason)
        self.tag = f"{random.randrange(16**4):04x}"
        second = random.randrange(1, 250)
        self.subnet = f"10.231.{second}"
        self.management = f"10.232.{second}"
        self.bridge = f"bw{self.tag}br"
        self.hosts: list[Host] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    @property
    def broker_address(self) -> str:
        """Where the broker listens and advertises itself."""
        return f"{self.subnet}.1"

    def add_host(self, name: str) -> Host:
        """A new namespace joined to the bridge (data) and to the root namespace (management)."""
        index = len(self.hosts)
        namespace = f"bw{self.tag}-{name}"
        data_root, data_host = f"bw{self.tag}{index}d", f"bw{self.tag}{index}D"
        mgmt_root, mgmt_host = f"bw{self.tag}{index}m", f"bw{self.tag}{index}M"
        address = f"{self.subnet}.{10 + index}"
        mgmt_root_address = f"{self.management}.{4 * index + 1}"
        management_address = f"{self.management}.{4 * index + 2}"
        _ip("netns", "add", namespace)
        _ip("link", "set", "lo", "up", namespace=namespace)
        _ip("link", "add", data_root, "type", "veth", "peer", "name", data_host)
        _ip("link", "set", data_host, "netns", namespace)
        _ip("link", "set", data_root, "master", self.bridge)
        _ip("link", "set", data_root, "up")
        _ip("addr", "add", f"{address}/24", "dev", data_host, namespace=namespace)
        _ip("link", "set", data_host, "up", namespace=namespace)
        _ip("link", "add", mgmt_root, "type", "veth", "peer", "name", mgmt_host)
        _ip("link", "set", mgmt_host, "netns", namespace)
        _ip("addr", "add", f"{mgmt_root_address}/30", "dev", mgmt_root)
        _ip("link", "set", mgmt_root, "up")
        _ip("addr", "add", f"{management_address}/30", "dev", mgmt_host, namespace=namespace)
        _ip("link", "set", mgmt_host, "up", namespace=namespace)
        host = Host(name, namespace, address, management_address, data_root, data_host)
        self.hosts.append(host)
        return host

    def close(self) -> None:
        """Remove every namespace (with its veth pairs) and the bridge."""
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", host.namespace], check=False)
            subprocess.run(
                ["ip", "link", "del", host.data_root_end], check=False, capture_output=True
            )
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)

    def __enter__(self) -> TestNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
