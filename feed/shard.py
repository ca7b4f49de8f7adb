"""Instruments over sockets: a pure, stable assignment.

Each broker allows so many instruments a socket and so many sockets an API key. The
assignment keeps every instrument on the socket it is already on (a reconnect or a new
subscription never moves the others), and puts new instruments on the least loaded
socket among the ones in use; more sockets come into use only when the ones in use are
full (or the account asks for a minimum). Instruments beyond every socket's capacity are
returned as ``unplaced``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping

__all__ = ["assign"]


def assign(
    wanted: Iterable[Hashable],
    current: Mapping[Hashable, int],
    per_socket: int,
    max_sockets: int,
    min_sockets: int = 1,
) -> tuple[dict[Hashable, int], list[Hashable]]:
    """(instrument → socket number, instruments that fit nowhere)."""
    wanted = list(dict.fromkeys(wanted))
    n_sockets = max(1, min(max_sockets, max(min_sockets, math.ceil(len(wanted) / per_socket))))
    load = [0] * n_sockets
    out: dict[Hashable, int] = {}
    new: list[Hashable] = []
    for key in wanted:
        s = current.get(key)
        if s is not None and s < n_sockets and load[s] < per_socket:
            out[key] = s
            load[s] += 1
        else:
            new.append(key)
    unplaced: list[Hashable] = []
    for key in new:
        s = min(range(n_sockets), key=load.__getitem__)
        if load[s] >= per_socket:
            unplaced.append(key)
            continue
        out[key] = s
        load[s] += 1
    return out, unplaced
