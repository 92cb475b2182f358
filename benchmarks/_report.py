"""What a throughput run prints: medians over the repetitions, the ratios, the goals of issue 12.

Every figure in a row is the median over the repetitions of that (era, clients, target). A ratio
is the median of the per-repetition ratios: each repetition measures the targets back to back,
so a ratio pairs measurements taken under the same machine load.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from _load import Measurement
from _peers import Target

GOAL_VS_PROXY = 1.3
"""hub calls/s >= 1.3x mcp-proxy's at 1 and 16 clients."""
GOAL_VS_PROXY_CLIENTS = (1, 16)
GOAL_VS_JSON = 0.6
"""hub calls/s >= 0.6x direct JSON's at 16 clients."""
GOAL_VS_JSON_CLIENTS = 16
GOAL_HUB_CPU_MS = 0.5
"""hub process CPU <= 0.5 ms per call."""
GOAL_P99_CLIENTS = 64
"""hub p99 below mcp-proxy's at 64 clients."""

CPU_PROCESSES = ("gateway", "server", "loadgen")


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@dataclass
class Row:
    """One (era, clients, target): medians over its repetitions."""

    era: str
    concurrency: int
    target: str
    status: str = ""
    """"" when measured; else why not: "n/a: ..." (era not served), "unavailable: ...", "FAILED: ..."."""
    reps: int = 0
    calls_per_s: float | None = None
    vs_mcp_proxy: float | None = None
    vs_direct_json: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    cpu_ms_per_call: dict[str, float | None] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)


def _paired_ratio(
    mine: list[Measurement], theirs: list[Measurement], value: Callable[[Measurement], float | None]
) -> float | None:
    """Median over repetitions of value(mine) / value(theirs), pairing equal `rep`s."""
    by_rep = {m.rep: m for m in theirs if m.usable}
    ratios = []
    for m in mine:
        other = by_rep.get(m.rep)
        if m.usable and other is not None:
            a, b = value(m), value(other)
            if a is not None and b:
                ratios.append(a / b)
    return _median(ratios)


class Summary:
    """The measurements of one run, grouped by (era, clients, target)."""

    def __init__(self, results: list[Measurement], unavailable: dict[str, str]) -> None:
        self.results = results
        self.unavailable = unavailable
        self._groups: dict[tuple[str, int, str], list[Measurement]] = {}
        for r in results:
            self._groups.setdefault((r.era, r.concurrency, r.target), []).append(r)

    def group(self, era: str, concurrency: int, target: str) -> list[Measurement]:
        return self._groups.get((era, concurrency, target), [])

    def row(self, era: str, concurrency: int, target: str) -> Row:
        row = Row(era, concurrency, target)
        group = self.group(era, concurrency, target)
        usable = [m for m in group if m.usable]
        row.reps = len(usable)
        row.errors = sum(m.errors for m in group)
        row.first_errors = [e for m in group for e in m.first_errors][:3]
        if target in self.unavailable:
            row.status = f"unavailable: {self.unavailable[target]}"
        elif not usable:
            unsupported = next((m.unsupported for m in group if m.unsupported), None)
            failed = next((m.failed for m in group if m.failed), None)
            row.status = f"n/a: {unsupported}" if unsupported else f"FAILED: {failed}" if failed else "FAILED: no calls"
            return row
        row.calls_per_s = _median(m.calls_per_s for m in usable)
        row.p50_ms = _median(m.p50_ms for m in usable)
        row.p99_ms = _median(m.p99_ms for m in usable)
        row.cpu_ms_per_call = {p: _median(m.cpu_ms_per_call.get(p) for m in usable) for p in CPU_PROCESSES}

        def rate(m: Measurement) -> float | None:
            return m.calls_per_s

        if target != "mcp-proxy":
            row.vs_mcp_proxy = _paired_ratio(group, self.group(era, concurrency, "mcp-proxy"), rate)
        if target != "direct-json":
            row.vs_direct_json = _paired_ratio(group, self.group(era, concurrency, "direct-json"), rate)
        return row

    def rows(self, eras: list[str], concurrencies: list[int], targets: list[str]) -> list[Row]:
        return [self.row(e, c, t) for e in eras for c in concurrencies for t in targets]


def _table(headers: list[str], rows: list[list[str]], left: set[int]) -> list[str]:
    """Plain-text table; the columns numbered in `left` are left-aligned, the others right-aligned."""
    widths = [max(len(x) for x in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return " | ".join(x.ljust(w) if i in left else x.rjust(w) for i, (x, w) in pairs).rstrip()

    return [line(headers), "-+-".join("-" * w for w in widths), *(line(r) for r in rows)]


def throughput_table(rows: list[Row]) -> list[str]:
    headers = [
        "era", "C", "target", "calls/s", "x mcp-proxy", "x direct-JSON", "p50 ms", "p99 ms", "errors",
        "CPU ms/call: gateway", "server", "gw+server", "loadgen",
    ]  # fmt: skip
    cells = []
    for r in rows:
        if r.status:
            short = r.status.split(":", 1)[0]
            cells.append([r.era, str(r.concurrency), r.target, short, *(["-"] * 9)])
            continue
        cpu = r.cpu_ms_per_call
        gateway, server = cpu.get("gateway"), cpu.get("server")
        both = None if server is None else (gateway or 0.0) + server
        cells.append([
            r.era, str(r.concurrency), r.target, _fmt(r.calls_per_s, ".0f"),
            _fmt(r.vs_mcp_proxy, ".2f"), _fmt(r.vs_direct_json, ".2f"),
            _fmt(r.p50_ms, ".2f"), _fmt(r.p99_ms, ".1f"), str(r.errors),
            _fmt(gateway, ".3f"), _fmt(server, ".3f"), _fmt(both, ".3f"), _fmt(cpu.get("loadgen"), ".3f"),
        ])  # fmt: skip
    return _table(headers, cells, left={0, 1, 2})


def rss_table(targets: dict[str, Target], unavailable: dict[str, str]) -> list[str]:
    headers = ["target", "idle RSS MB: gateway", "server", "what it is"]
    cells = []
    for name, t in targets.items():
        mb = {k: None if v is None else v / 2**20 for k, v in t.idle_rss_bytes.items()}
        cells.append([name, _fmt(mb.get("gateway"), ".1f"), _fmt(mb.get("server"), ".1f"), t.description])
    for name, why in unavailable.items():
        cells.append([name, "-", "-", f"unavailable: {why[:120]}"])
    return _table(headers, cells, left={0, 3})


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else "met" if met else "MISSED"


def goal_lines(summary: Summary, eras: list[str], concurrencies: list[int], hub: str = "hub") -> list[str]:
    """The goals of issue 12 for `hub` (printed, never asserted). Where mcp-proxy does not serve an
    era, the hub's figures in that era are compared with mcp-proxy's in the handshake era (the
    only one a client can reach it in), and the line says so."""
    lines = [
        f"Goals for the lean request path (issue 12), for `{hub}`; printed, not asserted:",
    ]
    for era in eras:
        proxy_era = era
        proxy_note = ""
        if era != "handshake" and not any(
            m.usable for m in summary.results if m.target == "mcp-proxy" and m.era == era
        ):
            if any(m.usable for m in summary.results if m.target == "mcp-proxy" and m.era == "handshake"):
                proxy_era = "handshake"
                proxy_note = " (mcp-proxy: its handshake-era figure; it does not serve this era)"
        lines.append(f"  {era}:")

        def rate(m: Measurement) -> float | None:
            return m.calls_per_s

        for c in GOAL_VS_PROXY_CLIENTS:
            if c not in concurrencies:
                continue
            ratio = _paired_ratio(summary.group(era, c, hub), summary.group(proxy_era, c, "mcp-proxy"), rate)
            met = None if ratio is None else ratio >= GOAL_VS_PROXY
            lines.append(
                f"    calls/s >= {GOAL_VS_PROXY:.1f}x mcp-proxy at C={c}: {_fmt(ratio, '.2f')}x "
                f"{_verdict(met)}{proxy_note}"
            )
        if GOAL_VS_JSON_CLIENTS in concurrencies:
            c = GOAL_VS_JSON_CLIENTS
            ratio = _paired_ratio(summary.group(era, c, hub), summary.group(era, c, "direct-json"), rate)
            met = None if ratio is None else ratio >= GOAL_VS_JSON
            lines.append(
                f"    calls/s >= {GOAL_VS_JSON:.1f}x direct-JSON at C={c}: {_fmt(ratio, '.2f')}x {_verdict(met)}"
            )
        cpus = [summary.row(era, c, hub).cpu_ms_per_call.get("gateway") for c in concurrencies]
        known = [x for x in cpus if x is not None]
        met = (max(known) <= GOAL_HUB_CPU_MS) if known else None
        per_c = ", ".join(f"C={c} {_fmt(x, '.3f')}" for c, x in zip(concurrencies, cpus, strict=True))
        lines.append(f"    hub CPU <= {GOAL_HUB_CPU_MS:.1f} ms/call: {per_c} {_verdict(met)}")
        if GOAL_P99_CLIENTS in concurrencies:
            c = GOAL_P99_CLIENTS
            mine = summary.row(era, c, hub).p99_ms
            theirs = summary.row(proxy_era, c, "mcp-proxy").p99_ms
            met = None if mine is None or theirs is None else mine < theirs
            lines.append(
                f"    p99 below mcp-proxy's at C={c}: {_fmt(mine, '.1f')} vs {_fmt(theirs, '.1f')} ms "
                f"{_verdict(met)}{proxy_note}"
            )
    return lines


def notes(rows: list[Row]) -> list[str]:
    """Why rows were not measured (one line per target, era and reason) and the errors seen."""
    out: list[str] = []
    skipped: dict[tuple[str, str, str], list[int]] = {}
    for r in rows:
        if r.status and not r.status.startswith("unavailable"):
            skipped.setdefault((r.target, r.era, r.status), []).append(r.concurrency)
        elif r.errors:
            example = r.first_errors[0][:200] if r.first_errors else "?"
            out.append(f"{r.target} {r.era} C={r.concurrency}: {r.errors} errors, e.g. {example}")
    first = [f"{t} {era} C={','.join(map(str, cs))}: {status[:300]}" for (t, era, status), cs in skipped.items()]
    return [*first, *out]
