"""kroute's tc filters (clsact, direct-action bpf) on interfaces, through pyroute2.

One kroute filter per interface and hook, at pref `TC_PRIO` handle `TC_HANDLE`, named
`kroute_<program>`: `attach` replaces it atomically (never a second filter), `detach`
removes only kroute's, and a foreign filter at kroute's pref is refused with the command
that removes it. Programs outlive the process that attached them.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from common.errors import DatapathError

log = logging.getLogger(__name__)

TC_PRIO = 1
"""tc filter priority (`pref`) and handle of kroute's filters: one per interface and hook."""
TC_HANDLE = 1
FILTER_PREFIX = "kroute_"
"""tc filter names (`TCA_BPF_NAME`): kroute_from_pod, kroute_from_netdev, kroute_to_netdev."""
HOOKS: dict[str, int] = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}  # clsact ffff:fff2/3


class TcHooks:
    """kroute's filters on the interfaces of the namespace `ipr` (a pyroute2 IPRoute) is in."""

    def __init__(self, ipr: Any) -> None:
        self._ipr = ipr

    def filters(self, index: int, hook: str) -> list[tuple[int, int, str]]:
        """(prio, handle, name) of each bpf filter on `hook` of interface `index`."""
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            msgs = self._ipr.get_filters(index, parent=HOOKS[hook])
        except NetlinkError as exc:
            if exc.code in (errno.EINVAL, errno.ENOENT):  # no clsact yet
                return []
            raise
        out = []
        for m in msgs:
            if m.get_attr("TCA_KIND") != "bpf" or not m["handle"]:
                continue
            opts = m.get_attr("TCA_OPTIONS")
            name = opts.get_attr("TCA_BPF_NAME") if opts else None
            out.append((m["info"] >> 16, m["handle"], name or ""))
        return out

    def attach(self, index: int, ifname: str | int, hook: str, program: str, fd: int) -> None:
        """Run the program `fd` (named `program`) on `hook` of `index`, replacing kroute's."""
        from pyroute2.netlink.exceptions import NetlinkError

        name = FILTER_PREFIX + program
        try:
            try:
                self._ipr.tc("add", "clsact", index)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
            for prio, handle, fname in self.filters(index, hook):
                ours = fname.startswith(FILTER_PREFIX)
                if (prio, handle) == (TC_PRIO, TC_HANDLE) and not ours:
                    raise DatapathError(
                        f"interface {ifname}: tc {hook} filter pref {prio} handle {handle} "
                        f"is {fname!r}, not kroute's; remove it (`tc filter del dev {ifname} "
                        f"{hook} pref {prio}`) to let kroute attach"
                    )
            self._ipr.tc(
                "replace-filter",
                "bpf",
                index,
                TC_HANDLE,
                parent=HOOKS[hook],
                prio=TC_PRIO,
                fd=fd,
                name=name,
                direct_action=True,
            )
            # A kroute filter left at another pref/handle (an older layout) would run too.
            for prio, handle, fname in self.filters(index, hook):
                if fname.startswith(FILTER_PREFIX) and (prio, handle) != (TC_PRIO, TC_HANDLE):
                    self._del_filter(index, hook, prio, handle)
        except NetlinkError as exc:
            raise DatapathError(
                f"interface {ifname}: attaching {program} on {hook} failed: {exc}; is it up "
                "and does the kernel have clsact (sch_ingress)?"
            ) from None
        log.info("bpf attached ifname=%s hook=%s program=%s", ifname, hook, program)

    def _del_filter(self, index: int, hook: str, prio: int, handle: int) -> None:
        self._ipr.tc("del-filter", "bpf", index, handle, parent=HOOKS[hook], prio=prio)

    def detach(self, index: int, ifname: str | int, hooks: tuple[str, ...]) -> bool:
        """Remove kroute's filters from `hooks` of `index`; True if any was there. The
        clsact qdisc stays (other programs may use it)."""
        from pyroute2.netlink.exceptions import NetlinkError

        removed = False
        try:
            for hook in hooks:
                for prio, handle, fname in self.filters(index, hook):
                    if fname.startswith(FILTER_PREFIX):
                        self._del_filter(index, hook, prio, handle)
                        removed = True
        except NetlinkError as exc:
            raise DatapathError(f"interface {ifname}: detaching failed: {exc}") from None
        if removed:
            log.info("bpf detached ifname=%s hooks=%s", ifname, ",".join(hooks))
        return removed

    def detach_everywhere(self) -> list[str]:
        """Remove kroute's filters from both hooks of every interface (no bcc needed: for
        legacy mode, where stale programs must not forward or masquerade); the names."""
        gone = []
        for link in self._ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if self.detach(link["index"], name, tuple(HOOKS)):
                gone.append(name)
        return gone

    def attached(self, hook: str) -> dict[str, str]:
        """{interface name: program} for every interface carrying a kroute program on `hook`."""
        out: dict[str, str] = {}
        for link in self._ipr.get_links():
            for _, _, fname in self.filters(link["index"], hook):
                if fname.startswith(FILTER_PREFIX):
                    out[link.get_attr("IFLA_IFNAME")] = fname[len(FILTER_PREFIX) :]
        return out
