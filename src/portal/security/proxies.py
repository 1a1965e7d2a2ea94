"""Behind a reverse proxy with PORTAL_TRUSTED_PROXIES unset, every resident seems to
come from the proxy: one attacker's failed sign-ins then throttle everyone.

`ProxyWatch` looks at each request's peer address in production. The first time a
request arrives from a loopback or private address while no trusted proxy is set, it
logs one warning saying what to set; `problem()` returns the same sentence (or None)
for the readiness check and `portal check`.
"""

from __future__ import annotations

import ipaddress
import logging

from litestar.types import Message, Scope

from portal.settings import Settings

log = logging.getLogger("portal.security")


# Where a reverse proxy on the same machine or network connects from: loopback, RFC 1918,
# carrier-grade NAT, IPv6 unique-local, and link-local. (Python's is_private also counts
# the documentation ranges, which real clients never use.)
INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)


def is_internal(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in INTERNAL_NETWORKS if network.version == ip.version)


class ProxyWatch:
    def __init__(self, settings: Settings) -> None:
        self.active = settings.production and not settings.trusted_proxies
        self.internal_peer: str | None = None

    def observe(self, peer: str) -> None:
        if self.active and self.internal_peer is None and is_internal(peer):
            self.internal_peer = peer
            log.warning("%s", self.problem())

    def problem(self) -> str | None:
        if self.internal_peer is None:
            return None
        return (
            f"requests arrive from {self.internal_peer}, a proxy's address, and"
            " PORTAL_TRUSTED_PROXIES is empty: every resident looks like one client to the"
            " sign-in throttle and the audit log; set PORTAL_TRUSTED_PROXIES to your proxy's"
            " address"
        )

    async def before_send(self, message: Message, scope: Scope) -> None:
        """A `before_send` hook: look at the peer once per response."""
        if self.active and self.internal_peer is None and message["type"] == "http.response.start":
            client = scope.get("client")
            if client:
                self.observe(client[0])


def proxy_problem(state) -> str | None:
    """For the readiness check: the app's proxy warning, or None (pass `app.state`)."""
    watch = getattr(state, "proxy_watch", None)
    return watch.problem() if watch is not None else None
