"""table.md and latency.svg: pure functions, results in, text out (cli writes the files)."""

import math

from . import workloads
from .model import EchodSummary, IdleResult, Meta, PeerResult, Results, Stats, Summary
from .peers import REFERENCE, reference
from .workloads import Workload


def fmt_num(v, digits: int = 3) -> str:
    """A figure in a table cell: 3 significant digits, k and M for thousands and millions, – for none."""
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.2f}M"
    if a >= 1e4:
        return f"{v / 1e3:.1f}k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits - 1}f}"


def ratio(v: float | None, ref: float | None) -> str:
    return "–" if v is None or not ref else f"{v / ref:.2f}×"


def other_load_cell(s: Summary) -> str:
    notes = []
    if s.discarded:
        notes.append(f"{s.discarded} re-run")
    if s.n_disturbed_left_out:
        notes.append(f"{s.n_disturbed_left_out} of {s.n_runs} left out")
    if s.all_disturbed:
        notes.append("⚠ all disturbed")
    return f"{fmt_num(s.foreign_cpu_pct)}%" + (f" ({', '.join(notes)})" if notes else "")


def table_workloads(peers: list[PeerResult]) -> list[Workload]:
    """The workloads any peer has results for, in table order."""
    return workloads.in_table_order(name for p in peers for name in p.workloads)


def render_table(race: Results) -> str:
    """The whole table.md of a race."""
    peers = race.peers
    ref = References(peers)
    wl = table_workloads(peers)
    lines = header(race.meta, race.notes, peers)
    lines += throughput(peers, ref, wl)
    lines += syscalls(peers, wl, race.meta)
    lines += echod_client(peers, ref, wl)
    lines += log_reads(peers, wl)
    lines += udp_per_core(peers, wl)
    lines += startup(race.meta)
    lines += workloads_note(wl)
    for w in wl:
        lines += detail(w, peers, ref)
    lines += idle(peers)
    lines += problems(peers)
    lines += peer_list(peers)
    return "\n".join(lines)


def header(meta: Meta, notes: dict[str, str], peers: list[PeerResult]) -> list[str]:
    second = (
        f"; `echod bench` (echod's own load generator, every byte verified too) ran beside it in "
        f"{meta.echod_client_repeats} of the rounds, second table"
        if meta.client == "both" and meta.echod_client_repeats > 0
        else ""
    )
    elapsed = meta.elapsed_s if meta.elapsed_s is not None else "?"
    out = [
        f"# echod race — {meta.date}",
        "",
        f"Machine: {meta.cpu}, {meta.cores} cores, kernel {meta.kernel}. {meta.repeats} repeat(s) × {meta.duration} s "
        f"per workload (+{meta.warmup} s warm-up), median shown, spread = (max−min)/median; repeats interleaved "
        f"across peers. Client: bench/client/echoclient (C, epoll, 1 thread, every byte verified){second}. "
        f"Race took {elapsed} s.",
    ]
    if meta.trimmed:
        out.append(
            "Trimmed to fit the time budget (`--budget`; `make bench` counts its builds): "
            + "; ".join(meta.trimmed)
            + "."
        )
    out += [f"Pinning: {meta.pinning}", f"Syscalls: {meta.perf}", ""]
    out += [f"- **{name}**: {note}" for name, note in notes.items()]
    if "echod" not in notes and not any(p.peer.startswith("echod") and p.ok for p in peers):
        out.append("- **echod**: pending (no working echod binary raced in this run)")
    return [*out, ""]


class References:
    """The reference peer of each workload (peers.reference: the C epoll server, or for UDP the C UDP server)."""

    def __init__(self, peers: list[PeerResult]):
        self.by_name = {p.peer: p for p in peers}

    def of(self, w: Workload) -> PeerResult | None:
        return self.by_name.get(reference(w))


def _summary(p: PeerResult | None, w: Workload) -> Summary | None:
    r = p and p.workloads.get(w.name)
    return r.summary if r else None


def _echod_summary(p: PeerResult | None, w: Workload) -> EchodSummary | None:
    r = p and p.workloads.get(w.name)
    return r.echod_summary if r else None


def _grid(title: list[str], wl: list[Workload]) -> list[str]:
    return [*title, "| peer | " + " | ".join(w.name for w in wl) + " |", "|---|" + "---:|" * len(wl)]


def throughput_cell(s: Summary | None, ref: Summary | None) -> str:
    if not s:
        return "–"
    flag = " ⚠" if s.errors_total or s.all_disturbed else ""
    return f"{fmt_num(s.ops_per_sec)} ({ratio(s.ops_per_sec, ref and ref.ops_per_sec)}){flag}"


def throughput(peers: list[PeerResult], ref: References, wl: list[Workload]) -> list[str]:
    title = "## Throughput (ops/s, ratio to the C epoll reference, for UDP to the C UDP reference; higher is better)"
    out = _grid([title, ""], wl)
    for p in peers:
        cells = [throughput_cell(_summary(p, w), _summary(ref.of(w), w)) for w in wl]
        out.append(f"| {p.peer}{'' if p.ok else ' ⚠'} | " + " | ".join(cells) + " |")
    return [*out, ""]


def syscalls(peers: list[PeerResult], wl: list[Workload], meta: Meta) -> list[str]:
    """System calls per message of every server that has a count, per workload (issue 15's io_uring targets are
    stated in these: at most 1 per round trip at one connection, under 0.2 at 300)."""
    counted = [w for w in wl if any(_syscalls_per_op(p, w) is not None for p in peers)]
    if not counted:
        return []
    title = [
        "### System calls per message (server, all threads; lower is better)",
        "",
        f"{meta.perf}. A message is a round trip (stream: a SIZE-byte message echoed; connect: a connection).",
        "",
    ]
    out = _grid(title, counted)
    for p in peers:
        if any(_syscalls_per_op(p, w) is not None for w in counted):
            out.append(f"| {p.peer} | " + " | ".join(fmt_num(_syscalls_per_op(p, w)) for w in counted) + " |")
    return [*out, ""]


def _syscalls_per_op(p: PeerResult, w: Workload) -> float | None:
    r = p.workloads.get(w.name)
    return r.syscalls_per_op if r else None


def echod_client_cell(e: EchodSummary | None, ref: EchodSummary | None) -> str:
    if not (e and e.ops_per_sec):
        return "–"
    return f"{fmt_num(e.ops_per_sec)} ({ratio(e.ops_per_sec, ref and ref.ops_per_sec)})" + (
        " ⚠" if e.errors_total else ""
    )


def echod_client(peers: list[PeerResult], ref: References, wl: list[Workload]) -> list[str]:
    if not any(_echod_summary(p, w) for p in peers for w in wl):
        return []
    title = [
        "### The same with `echod bench` as the client",
        "",
        "Same servers, same round, the other client; ratios to c-epoll (UDP: c-udp) under this client. Where the two "
        "tables agree, neither client is what limits the figures.",
        "",
    ]
    out = _grid(title, wl)
    for p in peers:
        cells = [echod_client_cell(_echod_summary(p, w), _echod_summary(ref.of(w), w)) for w in wl]
        out.append(f"| {p.peer} | " + " | ".join(cells) + " |")
    return [*out, ""]


def udp_per_core(peers: list[PeerResult], wl: list[Workload]) -> list[str]:
    """Datagrams echoed per second per core of each UDP peer: 10^6 / its CPU µs per round trip (one datagram in,
    one out), i.e. what one fully busy core would echo at that cost."""
    udp = [w for w in wl if w.udp]
    cells = {(p.peer, w.name): s.server_cpu_us_per_op for p in peers for w in udp if (s := _summary(p, w))}
    if not any(cells.values()):
        return []
    title = [
        "### UDP: datagrams echoed per second per core",
        "",
        "10⁶ ÷ server CPU µs per round trip (median): what one core would echo at the measured cost per datagram.",
        "",
    ]
    out = _grid(title, udp)
    for p in peers:
        if any((p.peer, w.name) in cells for w in udp):
            row = [fmt_num(1e6 / v) if (v := cells.get((p.peer, w.name))) else "–" for w in udp]
            out.append(f"| {p.peer} | " + " | ".join(row) + " |")
    return [*out, ""]


def log_reads_row(w: Workload, reads: PeerResult, base: PeerResult) -> str | None:
    """echod-1-reads against echod-1 in one workload: records per op over all runs, dropped records summed."""
    sr, sb = _summary(reads, w), _summary(base, w)
    if not sr or not sb:
        return None
    runs = reads.workloads[w.name].runs
    lines = sum(r.log.lines for r in runs if r.log)
    ops_all = sum(r.ops_all or 0 for r in runs)
    dropped = sum(r.log.dropped for r in runs if r.log)
    return (
        f"| {w.name} | {fmt_num(sb.ops_per_sec)} | {fmt_num(sr.ops_per_sec)} | {ratio(sr.ops_per_sec, sb.ops_per_sec)}"
        f" | {fmt_num(sb.server_cpu_us_per_op)} → {fmt_num(sr.server_cpu_us_per_op)} | "
        f"{fmt_num(lines / ops_all if ops_all else None)} | {dropped} |"
    )


def log_reads(peers: list[PeerResult], wl: list[Workload]) -> list[str]:
    reads = next((p for p in peers if p.peer == "echod-1-reads"), None)
    base = next((p for p in peers if p.peer == "echod-1"), None)
    if not (reads and base and any(_summary(reads, w) for w in wl)):
        return []
    out = [
        "### `log.reads: true`: every read logged to a file",
        "",
        "echod-1-reads is echod-1 with `log.reads: true`, `log.level: info`, text to a file (emptied after "
        "each run). Target: at least 0.8× the throughput without. records = lines the file received per "
        "op (reads, plus each connection's open and close lines); dropped = records the full log queue "
        "refused (so that logging never blocks the loop), from the `dropped N records` lines.",
        "",
        "| workload | echod-1 ops/s | echod-1-reads ops/s | ratio | CPU µs/op without → with | records/op | dropped |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    out += [row for w in wl if (row := log_reads_row(w, reads, base))]
    return [*out, ""]


def stats_cell(v: Stats | None) -> str:
    return f"{fmt_num(v.median)} ({fmt_num(v.min)}–{fmt_num(v.max)})" if v else "–"


def startup(meta: Meta) -> list[str]:
    if not meta.startup:
        return []
    out = [
        "### Start-up: exec to serving",
        "",
        "Median (min–max) over the runs, ms: from just before the spawn to listening (the first connect "
        "that succeeds, tried every 0.5 ms), and for echod to `READY=1` on a NOTIFY_SOCKET. Target for "
        "echod: under 50 ms.",
        "",
        "| peer | runs | to READY=1 | to listening |",
        "|---|---:|---:|---:|",
    ]
    for name, st in meta.startup.items():
        failure = f" {st.failure}" if st.failure else ""
        out.append(f"| {name} | {st.runs} | {stats_cell(st.ready_ms)} | {stats_cell(st.accept_ms)} |{failure}")
    return [*out, ""]


def workloads_note(wl: list[Workload]) -> list[str]:
    return [
        "Workloads: " + "; ".join(f"`{w.name}` = {w.label}" for w in wl) + ". ops = round trips (stream: SIZE-byte "
        "messages echoed; connect: connections opened, echoed once and closed). ⚠ = errors, a failed check, or "
        "every run disturbed by other work. Server CPU µs/op = (utime+stime of the server and its children over the "
        "client run) / every op completed in it. other load = CPU used meanwhile by processes outside the race, % of "
        "the whole machine (runs above the limit are re-run).",
        "",
    ]


def detail_row(p: PeerResult, w: Workload, rs: Summary | None) -> list[str]:
    r = p.workloads.get(w.name)
    s = r and r.summary
    if not s:
        return []
    row = (
        f"| {p.peer} | {fmt_num(s.ops_per_sec)} | {s.spread_pct:.1f}% | {ratio(s.ops_per_sec, rs and rs.ops_per_sec)} "
        f"| {fmt_num(s.mb_per_sec)} | {fmt_num(s.p50)} | {fmt_num(s.p99)} | {fmt_num(s.p999)} | {fmt_num(s.max)} | "
        f"{ratio(s.p99, rs and rs.p99)} | {fmt_num(s.server_cpu_us_per_op)} | "
        f"{ratio(s.server_cpu_us_per_op, rs and rs.server_cpu_us_per_op)} | {fmt_num(r.syscalls_per_op)} | "
        f"{s.errors_total} | {other_load_cell(s)} |"
    )
    e = r.echod_summary
    if not e:
        return [row]
    return [
        row,
        f"| ↳ {p.peer} (echod bench client) | {fmt_num(e.ops_per_sec)} | | | | | {fmt_num(e.p99)} | | | | | | | | |",
    ]


def detail(w: Workload, peers: list[PeerResult], ref: References) -> list[str]:
    rs = _summary(ref.of(w), w)
    out = [
        f"### {w.name}: {w.label}",
        "",
        "| peer | ops/s | ±spread | ×C | MB/s | p50 µs | p99 µs | p99.9 µs | max µs | p99 ×C | "
        "server CPU µs/op | CPU ×C | syscalls/msg | errors | other load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in peers:
        out += detail_row(p, w, rs)
    return [*out, ""]


def idle_row(peer: str, i: IdleResult) -> str:
    if i.failure:
        return f"| {peer} | failed: {i.failure} | | | | | | |"
    return (
        f"| {peer} | {i.connections} | {i.metric} | {i.kb_before} | {i.kb_idle} | {fmt_num(i.bytes_per_conn_idle)} | "
        f"{fmt_num(i.bytes_per_conn_after_echo)} | {i.kb_after_close} |"
    )


def idle(peers: list[PeerResult]) -> list[str]:
    if not any(p.idle for p in peers):
        return []
    out = [
        f"### {workloads.IDLE}: server memory per idle connection",
        "",
        "| peer | connections | metric | before kB | idle kB | B/conn idle | B/conn after one echo | after close kB |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    out += [idle_row(p.peer, p.idle) for p in peers if p.idle]
    return [
        *out,
        "",
        "Measured on a fresh instance of each server. idle = accepted, no byte exchanged; after one echo = "
        "each connection echoed 16 bytes once. Rss from /proc/PID/smaps_rollup (what VmRSS reports, without "
        "its per-CPU counter lag) for single-process servers; fork-per-connection servers (socat, xinetd): "
        "sum of Pss over the process tree, with fewer connections (one or two processes per connection).",
        "",
    ]


def problems(peers: list[PeerResult]) -> list[str]:
    bad = [p for p in peers if not p.ok]
    if not bad:
        return []
    return ["### Problems", "", *(f"- {p.peer}: {p.status}" for p in bad), ""]


def peer_list(peers: list[PeerResult]) -> list[str]:
    out = [
        "### Peers",
        "",
        "| peer | what | threads | server CPU | other load (median over its runs) | status |",
        "|---|---|---:|---|---:|---|",
    ]
    for p in peers:
        cpu = f"pinned {p.pinned_cpu}" if p.pinned_cpu is not None else "unpinned"
        load = "–" if p.other_load_median_pct is None else f"{p.other_load_median_pct}%"
        out.append(f"| {p.peer} | {p.desc} | {p.threads} | {cpu} | {load} | {p.status} |")
    return [
        *out,
        "",
        "other load = CPU used by processes outside the race during a peer's runs, in % of the machine "
        "(machine busy time from /proc/stat minus server and client CPU): well above 0 means other work "
        "shared the machine and disturbed the figures. The peers are interleaved (each repeat runs every "
        "peer, in a rotated order), so such disturbances tend to fall on all peers alike.",
        "",
    ]


PALETTE = (
    "#000000",
    "#d62728",
    "#ff7f0e",
    "#1f77b4",
    "#17becf",
    "#2ca02c",
    "#8c564b",
    "#9467bd",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#393b79",
    "#637939",
    "#843c39",
)


def latency_points(peers: list[PeerResult]) -> dict[str, list[tuple[int, float, float, float]]]:
    """(connections, p50, p99, p99.9) of every pingpong 64 B workload, per peer."""
    pts: dict[str, list[tuple[int, float, float, float]]] = {}
    for p in peers:
        for w in workloads.ALL:
            s = w.mode == "pingpong" and w.size == 64 and _summary(p, w)
            if s:
                pts.setdefault(p.peer, []).append((w.connections, s.p50, s.p99, s.p999))
    return pts


def render_svg(peers: list[PeerResult]) -> str | None:
    """Latency percentiles (p50, p99, p99.9) against connection count, pingpong 64 B, log-log, hand-written SVG;
    None when no peer has such a workload."""
    pts = latency_points(peers)
    if not pts:
        return None
    conns = sorted({c for v in pts.values() for c, *_ in v})
    ys = [y for v in pts.values() for _, *yy in v for y in yy if y]
    axes = _Axes(
        0.7, max(conns) * 1.4, 10 ** math.floor(math.log10(max(min(ys), 1e-3))), 10 ** math.ceil(math.log10(max(ys)))
    )
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{_W}" height="{_H}" fill="white"/>',
        f'<text x="{_ML}" y="22" font-size="15" font-weight="bold">Round-trip latency vs connections '
        f"(pingpong 64 B, echoclient, µs, log-log)</text>",
    ]
    for pi, (pname, idx) in enumerate((("p50", 1), ("p99", 2), ("p99.9", 3))):
        out += _panel(axes, _ML + pi * (_PW + 60), pname, idx, conns, pts)
    out += _legend(pts)
    out.append("</svg>")
    return "\n".join(out)


_W, _H, _PW, _PH, _ML, _MT = 1260, 440, 290, 320, 60, 50


class _Axes:
    """The log-log scale of every panel."""

    def __init__(self, xlo, xhi, ylo, yhi):
        self.xlo, self.xhi, self.ylo, self.yhi = xlo, xhi, ylo, yhi

    def x(self, x0, c):
        lo, hi = math.log10(self.xlo), math.log10(self.xhi)
        return x0 + (math.log10(c) - lo) / (hi - lo) * _PW

    def y(self, v):
        lo, hi = math.log10(self.ylo), math.log10(self.yhi)
        return _MT + _PH - (math.log10(max(v, self.ylo)) - lo) / (hi - lo) * _PH


def _panel(axes: _Axes, x0, pname, idx, conns, pts) -> list[str]:
    y0 = _MT
    out = [
        f'<rect x="{x0}" y="{y0}" width="{_PW}" height="{_PH}" fill="none" stroke="#444"/>',
        f'<text x="{x0 + _PW / 2}" y="{y0 - 8}" text-anchor="middle" font-weight="bold">{pname}</text>',
    ]
    d = axes.ylo
    while d <= axes.yhi * 1.0001:
        yy = axes.y(d)
        label = f"{d / 1000:g} ms" if d >= 1000 else f"{d:g} µs"
        out.append(f'<line x1="{x0}" x2="{x0 + _PW}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 4}" y="{yy + 4:.1f}" text-anchor="end" font-size="10">{label}</text>')
        d *= 10
    for c in conns:
        xx = axes.x(x0, c)
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{y0}" y2="{y0 + _PH}" stroke="#eee"/>')
        out.append(f'<text x="{xx:.1f}" y="{y0 + _PH + 16}" text-anchor="middle">{c}</text>')
    out.append(f'<text x="{x0 + _PW / 2}" y="{y0 + _PH + 34}" text-anchor="middle">connections</text>')
    for k, (peer, v) in enumerate(pts.items()):
        col = PALETTE[k % len(PALETTE)]
        coords = [(axes.x(x0, c), axes.y(t[idx - 1])) for c, *t in sorted(v) if t[idx - 1]]
        if len(coords) > 1:
            width = 2.5 if peer == REFERENCE else 1.5
            points = " ".join(f"{a:.1f},{b:.1f}" for a, b in coords)
            out.append(f'<polyline fill="none" stroke="{col}" stroke-width="{width}" points="{points}"/>')
        out += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{col}"/>' for a, b in coords]
    return out


def _legend(pts) -> list[str]:
    lx = _ML + 3 * (_PW + 60) - 30
    out = []
    for k, peer in enumerate(pts):
        col = PALETTE[k % len(PALETTE)]
        yy = _MT + 10 + k * 18
        out.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{yy}" y2="{yy}" stroke="{col}" stroke-width="2.5"/>')
        out.append(f'<text x="{lx + 24}" y="{yy + 4}">{peer}</text>')
    return out
