"""Two "hosts" on one machine: network namespaces joined by a veth pair (root only).

Tests that put parts of the graph on different machines (the learner on another host) run
each part under ``ip netns exec`` in its own namespace; the two namespaces see each other
only through the veth pair, with addresses on a private subnet, so DDS discovery and every
sample between the parts crosses a real (virtual) Ethernet link. Names carry the pid and a
random tag, so parallel test runs never collide; :meth:`HostPair.close` deletes the
namespaces (which takes the veth pair with them) and is safe to call twice.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess

SUBNET = "10.213.7"  # /24; the namespaces are private, so any run may use the same one


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class HostPair:
    """Namespaces ``names[0]`` and ``names[1]``, veth ends ``links[i]`` at ``addresses[i]``."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.names = (f"naf{tag}a", f"naf{tag}b")
        self.links = (f"nv{tag}a", f"nv{tag}b")  # interface names: at most 15 characters
        self.addresses = (f"{SUBNET}.1", f"{SUBNET}.2")
        self._made: list[str] = []
        try:
            for name in self.names:
                _ip("netns", "add", name)
                self._made.append(name)
            _ip("link", "add", self.links[0], "type", "veth", "peer", "name", self.links[1])
            for name, link, address in zip(self.names, self.links, self.addresses):
                _ip("link", "set", link, "netns", name)
                _ip("-n", name, "addr", "add", f"{address}/24", "dev", link)
                _ip("-n", name, "link", "set", "lo", "up")
                _ip("-n", name, "link", "set", link, "up")
                # DDS discovery is multicast (239.255.0.1): without a default route the
                # kernel needs to be told where multicast goes.
                _ip("-n", name, "route", "add", "224.0.0.0/4", "dev", link)
        except BaseException:
            self.close()
            raise

    def exec_prefix(self, host: int) -> list[str]:
        """Command prefix that runs a program on host 0 or 1."""
        return ["ip", "netns", "exec", self.names[host]]

    def link_bytes(self, host: int) -> tuple[int, int]:
        """(received, sent) bytes of host ``host``'s end of the link."""
        info = json.loads(_ip("-n", self.names[host], "-s", "-j", "link", "show", self.links[host]))
        stats = info[0]["stats64"]
        return int(stats["rx"]["bytes"]), int(stats["tx"]["bytes"])

    def close(self) -> None:
        while self._made:
            name = self._made.pop()
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        # A veth pair that failed before it was moved into the namespaces is still here.
        subprocess.run(["ip", "link", "del", self.links[0]], capture_output=True, timeout=30)
