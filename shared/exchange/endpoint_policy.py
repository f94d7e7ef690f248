"""Which Exchange URLs an organization's administrator may point calbridge at.

calbridge sends a connection's secret to the connection's EWS URL, from inside the operator's
network. A URL an administrator sets must therefore never reach what only calbridge's own host
can reach: the cloud's instance metadata and wire-server addresses (where a managed identity's
tokens are handed out), link-local and loopback services, or the operator's private networks —
unless the operator says so:

- ``https`` only. Plain ``http`` only to a loopback address, and only when the operator allows
  loopback endpoints (``CALBRIDGE_ALLOW_LOOPBACK_EXCHANGE``, set by the local runner and the tests
  for the simulator; off in Azure).
- Never: link-local (``169.254.0.0/16``, ``fe80::/10``), cloud metadata and platform addresses
  (AWS ``fd00:ec2::254``, Azure's wire server ``168.63.129.16``, Alibaba ``100.100.100.200``),
  unspecified, multicast, reserved or documentation-only addresses.
- Private ranges (``10/8``, ``172.16/12``, ``192.168/16``, ``100.64/10``, ``fc00::/7``) only
  when the operator allows them (``CALBRIDGE_ALLOW_PRIVATE_EXCHANGE_NETWORKS``, for an
  on-premises Exchange reached through a virtual network).
- A host name counts as every address it resolves to. It is checked when the connection is
  saved and again whenever a gateway is built for it, so a name that later resolves somewhere
  forbidden is refused then. A name that does not resolve at all is not refused when saved (it
  cannot be reached either); the check repeats before any call.
- A user name or password inside the URL is refused by the model itself (``shared.models``):
  credentials go in ``username`` and ``secretReference``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from shared.config import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], Iterable[str]]

_PLATFORM_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",  # instance metadata (Azure IMDS, AWS, GCP)
        "168.63.129.16",  # Azure wire server and platform DNS
        "100.100.100.200",  # Alibaba Cloud metadata
        "fd00:ec2::254",  # AWS metadata over IPv6
    )
)
_SHARED_ADDRESS_SPACE: Final = ipaddress.ip_network("100.64.0.0/10")


def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


class EndpointRefused(ValueError):
    """An Exchange URL the policy refuses; the message names why, never a credential."""


@dataclass(frozen=True)
class ExchangeEndpointPolicy:
    """The operator's choices (see the module docstring); the defaults are Azure's."""

    allow_loopback: bool = False
    allow_private_networks: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ExchangeEndpointPolicy:
        return cls(
            allow_loopback=settings.allow_loopback_exchange,
            allow_private_networks=settings.allow_private_exchange_networks,
        )

    def check(self, url: str, *, resolve: Resolver = resolve_host) -> None:
        """Raise ``EndpointRefused`` unless calbridge may call ``url``."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").rstrip(".")
        if parts.username is not None or parts.password is not None:
            raise EndpointRefused("must not carry a user name or password")
        if scheme not in ("https", "http") or not host:
            raise EndpointRefused("must be an https:// URL with a host")
        literal = _literal_address(host)
        addresses = [literal] if literal is not None else _resolved(host, resolve)
        loopback = bool(addresses) and all(address.is_loopback for address in addresses)
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            loopback = True
        if scheme == "http" and not (loopback and self.allow_loopback):
            raise EndpointRefused("must use https (plain http only to this machine in local runs)")
        if loopback and not self.allow_loopback:
            raise EndpointRefused("must not point at this machine (loopback)")
        for address in addresses:
            self._check_address(address)

    def _check_address(self, address: IpAddress) -> None:
        if address in _PLATFORM_ADDRESSES or address.is_link_local:
            raise EndpointRefused(
                f"must not point at {address}: a link-local or cloud metadata address"
            )
        if address.is_loopback:
            if not self.allow_loopback:
                raise EndpointRefused("must not point at this machine (loopback)")
            return
        if address.is_unspecified or address.is_multicast or address.is_reserved:
            raise EndpointRefused(f"must not point at {address}: not a server's address")
        private = address.is_private or (
            isinstance(address, ipaddress.IPv4Address) and address in _SHARED_ADDRESS_SPACE
        )
        if private and not self.allow_private_networks:
            raise EndpointRefused(
                f"must not point at the private address {address} unless the operator allows "
                "private Exchange networks"
            )
        if not address.is_global and not private:
            raise EndpointRefused(f"must not point at {address}: not a public address")


def _literal_address(host: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return _unmapped(address)


def _unmapped(address: IpAddress) -> IpAddress:
    """An IPv4 address written as IPv6 (``::ffff:169.254.169.254``) is that IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _resolved(host: str, resolve: Resolver) -> list[IpAddress]:
    found: list[IpAddress] = []
    for text in resolve(host):
        try:
            found.append(_unmapped(ipaddress.ip_address(text.split("%", 1)[0])))
        except ValueError:
            continue
    return found
