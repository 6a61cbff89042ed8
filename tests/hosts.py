"""Hosts of a test's own on this machine: network namespaces made with ``ip netns``.

The cluster's side is a bridge in this namespace, at ``.1`` of a /24 of 10.0.0.0/8
that no interface here uses. Each host is a network namespace joined to the bridge by a
veth pair: its own interface (``eth0``, at ``.2``, ``.3``, ...) and loopback; processes
started through :meth:`Host.command` see only that. :meth:`Host.cut` takes the host's
link down at the bridge, as a pulled cable or a failed switch port does: nothing the
host sends arrives and nothing reaches it, and neither side is told; :meth:`Host.restore`
brings it back.

Making namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2. Where that
is missing, :func:`make_hosts` raises :class:`HostsUnavailable` saying what failed and
how to fix it: the tests that need hosts fail, loudly, and never skip.
"""

from __future__ import annotations

import ipaddress
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class HostsUnavailable(RuntimeError):
    """Network namespaces cannot be made on this machine."""


def ip(*args: str) -> None:
    """Run ``ip ARGS``; a failure raises HostsUnavailable with ip's own words."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise HostsUnavailable(
            f"`ip {' '.join(args)}` failed (exit {result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )


@dataclass(frozen=True)
class Host:
    """One host: a network namespace with one link to the bridge."""

    name: str
    """The namespace's name (``ip netns list``)."""
    address: str
    """Its address on the bridge's subnet: what the cluster sees it come from."""
    link: str
    """The bridge's end of its veth pair: down is a cut cable."""

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the host (``ip netns exec``, which execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        """Take the host's link down: from now on nothing crosses it either way."""
        ip("link", "set", self.link, "down")

    def restore(self) -> None:
        ip("link", "set", self.link, "up")


@dataclass(frozen=True)
class Hosts:
    """The bridge (the cluster's address) and the hosts joined to it."""

    bridge: str
    address: str
    """The bridge's address, on this machine: where the hosts reach the cluster."""
    hosts: list[Host]


def _unused_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.0.0.0/8 that overlaps no address or route of this machine."""
    used = (
        subprocess.run(
            ["ip", "-4", "-o", "route", "show", "table", "all"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        + subprocess.run(
            ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False
        ).stdout
    )
    taken = []
    for word in used.split():
        try:
            taken.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    for _ in range(200):
        subnet = ipaddress.IPv4Network(
            f"10.{random.randint(100, 254)}.{random.randint(0, 255)}.0/24"
        )
        if not any(subnet.overlaps(net) for net in taken if net.prefixlen > 0):
            return subnet
    raise HostsUnavailable("no free /24 in 10.0.0.0/8 for the test's hosts")


def _check_tools() -> None:
    if shutil.which("ip") is None:
        raise HostsUnavailable("`ip` is not installed (Debian: apt-get install iproute2)")


@contextmanager
def make_hosts(count: int) -> Iterator[Hosts]:
    """``count`` hosts on a bridge of their own; everything made is removed on exit.

    Raises HostsUnavailable, with the fix, if this machine cannot make them."""
    _check_tools()
    tag = uuid.uuid4().hex[:6]
    subnet = _unused_subnet()
    addresses = list(subnet.hosts())
    bridge = f"tsb{tag}"
    namespaces: list[str] = []
    links: list[str] = []
    try:
        try:
            ip("link", "add", bridge, "type", "bridge")
        except HostsUnavailable as error:
            raise HostsUnavailable(
                f"{error}. Network namespaces and bridges need root (CAP_NET_ADMIN, "
                f"CAP_SYS_ADMIN): run the tests as root, or in a container with "
                f"--cap-add NET_ADMIN --cap-add SYS_ADMIN"
            ) from None
        links.append(bridge)
        ip("addr", "add", f"{addresses[0]}/{subnet.prefixlen}", "dev", bridge)
        ip("link", "set", bridge, "up")
        hosts = []
        for index in range(1, count + 1):
            namespace = f"ts{tag}-h{index}"
            link = f"tsv{tag}{index}"
            ip("netns", "add", namespace)
            namespaces.append(namespace)
            ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            links.append(link)
            ip("link", "set", link, "master", bridge, "up")
            address = str(addresses[index])
            ip("-n", namespace, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
            ip("-n", namespace, "link", "set", "lo", "up")
            hosts.append(Host(namespace, address, link))
        yield Hosts(bridge, str(addresses[0]), hosts)
    finally:
        for namespace in namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        for link in reversed(links):
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
