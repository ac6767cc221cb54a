"""Markdown tables of the results: ratios first, absolute figures beside them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import bench_adapters as ad
import bench_workloads as wl


def med(values: Sequence[float]) -> float | None:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(clean) if clean else None


def f(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def spread(values: Sequence[float], digits: int = 2) -> str:
    if len(values) < 2:
        return "-"
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def kilo(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> list[str]:
    """A Markdown table; columns from index *right* on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def mode(autocommit: bool) -> str:
    return "autocommit on" if autocommit else "autocommit off (PyMySQL's default)"


def round_ratio(top: Sequence[float], bottom: Sequence[float]) -> float | None:
    """Median over rounds of top[r] / bottom[r]: contenders measured in the same round."""
    return med([a / b for a, b in zip(top, bottom, strict=False) if b])


def strongest_peer(
    per_round: dict[str, list[float]],
    ours: list[float],
    ours_on_top: bool,
    left_out: frozenset[str] = frozenset(),
) -> tuple[str | None, float | None]:
    """The peer that comes closest to ours by the per-round ratio, and that ratio.

    ``ours_on_top``: the ratio is ours / peer (throughput), else peer / ours (time).
    Peers in *left_out* (not like for like) are not considered.
    """
    ratios = {}
    for key in ad.PEERS:
        if per_round.get(key) and key not in left_out:
            top, bottom = (ours, per_round[key]) if ours_on_top else (per_round[key], ours)
            value = round_ratio(top, bottom)
            if value is not None:
                ratios[key] = value
    if not ratios:
        return None, None
    key = min(ratios, key=lambda k: ratios[k])
    return key, ratios[key]


def check(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


class Report:
    """Collects Markdown sections and the informational target checks."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.targets: list[tuple[str, str, str]] = []  # (target, measured, verdict)

    def target(self, name: str, measured: str, ok: bool | None) -> None:
        self.targets.append((name, measured, check(ok)))

    # --- W1 ---

    def w1(self, results: dict[bool, wl.W1Result], cfg: wl.Settings) -> None:
        out = self.lines
        out += [
            "## W1: acquire + release, no query, one thread",
            "",
            (
                f"Median µs per cycle over {cfg.w1_rounds} interleaved rounds of up to "
                f"{cfg.w1_duration:g} s each; round trips per cycle from the server's status counters "
                f"(sum of all `Com_%` and `Questions`) over {cfg.rt_cycles} cycles (connect per op: "
                "a tenth), less the counts of the status query itself (measured with zero cycles). "
                "A COM_PING counts in `Com_admin_commands` but not in `Questions`; a connect's "
                "handshake counts in neither."
            ),
            "",
        ]
        for autocommit in (False, True):
            res = results.get(autocommit)
            if res is None:
                continue
            us = {k: med(v) for k, v in res.us.items()}
            ours = us.get("ours")
            rows = []
            for key in res.us:
                value = us[key]
                ratio = round_ratio(res.us[key], res.us["ours"]) if "ours" in res.us else None
                rows.append(
                    [
                        ad.LABELS[key],
                        f(value, 2),
                        spread(res.us[key], 2),
                        f(ratio, 1),
                        f(res.com[key], 3),
                        f(res.questions[key], 3),
                    ]
                )
            out += [f"### {mode(autocommit)}", ""]
            out += table(
                [
                    "contender",
                    "µs/cycle",
                    "range",
                    "x ours (defaults)",
                    "Com_% /cycle",
                    "Questions /cycle",
                ],
                rows,
            )
            peer, speedup = strongest_peer(res.us, res.us.get("ours", []), ours_on_top=False)
            if peer is not None and speedup is not None and ours:
                out += [
                    "",
                    (
                        f"ours (defaults) is **{speedup:.1f}x** faster than the best peer "
                        f"({ad.LABELS[peer]}, {f(us[peer], 1)} µs); ratios are medians of "
                        "per-round ratios."
                    ),
                ]
                self.target(
                    f"W1 {mode(autocommit)}: ≥ 25x faster than the best peer",
                    f"{speedup:.1f}x",
                    speedup >= 25,
                )
            if "ours" in res.com:
                rt = res.com["ours"]
                self.target(
                    f"W1 {mode(autocommit)}: zero round trips per cycle",
                    f"{rt:.3f} Com_%/cycle",
                    abs(rt) < 0.005,
                )
            out.append("")

    # --- per-op overhead ---

    def overhead(self, results: dict[bool, wl.OverheadResult], cfg: wl.Settings) -> None:
        out = self.lines
        out += [
            "## Per-op overhead: client CPU the pool adds to one `SELECT 1`",
            "",
            (
                "Process CPU time (`time.process_time`), one thread, per op. *pooled op* = "
                "acquire → `SELECT 1` (cursor, execute, fetchall, close) → release; *held* = the "
                "same query repeated on the acquired connection (each pool holds one connection, "
                "so both use the same one); *raw* = the same query on a plain "
                "`pymysql.connect()` connection. The three alternate in blocks of "
                f"{cfg.ov_ops // cfg.ov_blocks} ops ({cfg.ov_blocks} blocks each per contender "
                "and round; connect per op: a tenth), so a burst of load from other processes "
                "(which inflates CPU time per op as well) hits neighbouring blocks alike; a "
                "round's value is the median over its blocks, *overhead* the median of the "
                "per-block differences pooled - held, i.e. what acquire + release add on the same "
                "connection; the table shows medians over "
                f"{cfg.ov_rounds} interleaved rounds (range: per-round overheads). *held - raw* "
                "compares two different connections and is indicative only: here two "
                "connections can differ by 10-15 µs of CPU per query, by where the server runs "
                "each one's thread. With autocommit off a pool's release includes the ROLLBACK "
                "it needs after a statement, a round trip whose client CPU counts here."
            ),
            "",
        ]
        for autocommit in (True, False):
            res = results.get(autocommit)
            if res is None:
                continue
            rows = []
            for key in res.cycle:
                cycle, held, raw = med(res.cycle[key]), med(res.held[key]), med(res.raw[key])
                over = med(res.overhead[key])
                rows.append(
                    [
                        ad.LABELS[key],
                        f(cycle, 1),
                        f(held, 1),
                        f(raw, 1),
                        f(over, 1),
                        spread(res.overhead[key], 1),
                        f(held - raw if held is not None and raw is not None else None, 1),
                    ]
                )
            out += [f"### {mode(autocommit)}", ""]
            out += table(
                [
                    "contender",
                    "pooled op µs",
                    "held µs",
                    "raw µs",
                    "overhead µs",
                    "range",
                    "held - raw µs",
                ],
                rows,
            )
            out.append("")
            if "ours" in res.overhead:
                value = med(res.overhead["ours"])
                self.target(
                    f"per-op overhead ≤ 5 µs ({mode(autocommit)})",
                    f"{f(value, 1)} µs",
                    None if value is None else value <= 5,
                )

    # --- W2 ---

    def w2(self, results: dict[bool, wl.W2Result], cfg: wl.Settings) -> None:
        out = self.lines
        out += [
            "## W2: acquire → `SELECT 1` → release, pool of 8",
            "",
            (
                "Each cell: ops/s as a ratio to one persistent connection per thread (median of the "
                "per-round ratios; so is *ours ÷ best peer*, against the peer closest to ours), "
                "absolute median ops/s in parentheses. "
                f"{cfg.w2_rounds} interleaved rounds of {cfg.w2_duration:g} s per cell. The "
                "thread-local baseline has one connection per thread (16 or 64 connections where "
                "the pools have 8), so above 8 threads no pool can reach 1.0. Every pool opens its 8 connections "
                "before the runs; a peer that opens more during a cell's runs (the server's "
                "`Connections` count) is not like for like: it is reported, and left out of "
                "*best peer* for that cell. Client CPU per op: the whole process's CPU time "
                "(`time.process_time()`, every thread) over a run, divided by its ops."
            ),
            "",
        ]
        goals_on = {1: 0.90, 4: 0.85, 16: 0.75, 64: 0.75}
        for autocommit in (True, False):
            res = results.get(autocommit)
            if res is None:
                continue
            keys = list(dict.fromkeys(k for k, _ in res.ops))
            threads = list(dict.fromkeys(t for _, t in res.ops))
            rows = []
            for key in keys:
                row = [ad.LABELS[key]]
                for t in threads:
                    ratio = med(res.ratio[key, t])
                    row.append(f"{f(ratio, 2)} ({kilo(med(res.ops[key, t]))})")
                rows.append(row)
            vs_peer = ["**ours ÷ best peer**"]
            live_row = ["pools that opened connections during the runs"]
            for t in threads:
                per_round = {k: res.ops[k, t] for k in keys}
                over = frozenset(k for k in ad.PEERS if res.opened.get((k, t), 0) > 0)
                live_row.append(
                    ", ".join(f"{ad.LABELS[k]}: {res.opened[k, t]}" for k in sorted(over)) or "none"
                )
                peer, gain = strongest_peer(per_round, res.ops.get(("ours", t), []), True, over)
                if peer is None or gain is None:
                    vs_peer.append("n/a")
                    continue
                vs_peer.append(f"**{gain:.2f}x** ({ad.LABELS[peer]})")
                need = 1.3 if autocommit else 1.2
                self.target(
                    f"W2 {mode(autocommit)} T={t}: ≥ {need}x best peer",
                    f"{gain:.2f}x",
                    gain >= need,
                )
                ratio = med(res.ratio.get(("ours", t), []))
                if autocommit and t in goals_on and ratio is not None:
                    self.target(
                        f"W2 autocommit on T={t}: ≥ {goals_on[t]:.2f}x thread-local",
                        f"{ratio:.2f}x",
                        ratio >= goals_on[t],
                    )
            rows.append(vs_peer)
            rows.append(live_row)
            cpu_row = ["ours: client CPU µs per op (x T=1)"]
            base = med(res.cpu.get(("ours", threads[0]), []))
            for t in threads:
                cpu = med(res.cpu.get(("ours", t), []))
                share = f" ({cpu / base:.2f}x)" if cpu is not None and base else ""
                cpu_row.append(f"{f(cpu, 0)}{share}")
                if t == 4 and cpu is not None and base:
                    self.target(
                        f"W2 {mode(autocommit)}: client CPU per op at T=4 ≤ 1.2x T=1",
                        f"{cpu / base:.2f}x",
                        cpu / base <= 1.2,
                    )
            rows.append(cpu_row)
            out += [f"### {mode(autocommit)}", ""]
            out += table(["contender", *(f"T={t}" for t in threads)], rows)
            trouble = [
                f"{ad.LABELS[k]} T={t}: {res.errors[k, t]} errors "
                f"({', '.join(f'{kind}x{n}' for kind, n in sorted(res.kinds[k, t].items()))}), "
                f"{res.stuck[k, t]} stuck"
                for (k, t) in res.errors
                if res.errors[k, t] or res.stuck[k, t]
            ]
            if trouble:
                out += ["", "Errors during the runs: " + "; ".join(trouble) + "."]
            out.append("")

    # --- W3 ---

    def w3(self, results: dict[str, list[wl.W3Run]], cfg: wl.Settings) -> None:
        out = self.lines
        out += [
            "## W3: 64 threads on 4 connections (autocommit on)",
            "",
            (
                f"{cfg.w3_rounds} interleaved rounds of {cfg.w3_duration:g} s; medians over rounds. "
                "Wait = time in acquire. Ops per thread: min / median / max. Starved = threads with "
                "no op or under 1 % of the mean. Jain = (Σx)² / (n·Σx²) over per-thread ops. Only "
                "the pools run here (thread-local and connect per op have no 4-connection limit)."
            ),
            "",
        ]
        rows = []
        for key, runs in results.items():
            if not runs:
                continue
            p50 = med([r.p50 for r in runs])
            p99 = med([r.p99 for r in runs])
            counts = [sorted(r.counts) for r in runs]
            mins = med([c[0] for c in counts])
            mids = med([statistics.median(c) for c in counts])
            maxs = med([c[-1] for c in counts])
            rows.append(
                [
                    ad.LABELS[key],
                    kilo(med([r.ops_per_s for r in runs])),
                    f(None if p50 is None else p50 * 1e3, 2),
                    f(None if p99 is None else p99 * 1e3, 2),
                    f(med([r.max * 1e3 for r in runs]), 1),
                    f(p99 / p50 if p99 is not None and p50 else None, 1),
                    f"{f(mins, 0)} / {f(mids, 0)} / {f(maxs, 0)}",
                    "/".join(str(r.starved) for r in runs),
                    f(med([r.jain for r in runs]), 4),
                    str(sum(r.errors for r in runs))
                    + (
                        f" ({sum(r.stuck for r in runs)} stuck)"
                        if any(r.stuck for r in runs)
                        else ""
                    ),
                ]
            )
            if key == "ours":
                starved = max(r.starved for r in runs)
                jain_value = med([r.jain for r in runs])
                self.target("W3: no starved thread", f"{starved} (worst round)", starved == 0)
                self.target(
                    "W3: Jain ≥ 0.99",
                    f(jain_value, 4),
                    None if jain_value is None else jain_value >= 0.99,
                )
                if p50 and p99 is not None:
                    self.target("W3: p99 wait ≤ 2x median", f"{p99 / p50:.1f}x", p99 <= 2 * p50)
        out += table(
            [
                "contender",
                "ops/s",
                "wait p50 ms",
                "p99 ms",
                "max ms",
                "p99/p50",
                "ops/thread",
                "starved (per round)",
                "Jain",
                "errors",
            ],
            rows,
        )
        out.append("")

    # --- W4 ---

    def w4(self, results: dict[str, list[wl.W4Run]], cfg: wl.Settings) -> None:
        out = self.lines
        out += [
            "## W4: server restart under load (16 threads, pool of 8, autocommit on)",
            "",
            (
                f"Load for {cfg.w4_before:g} s, then `ThrowawayServer.restart()` (SIGTERM, start "
                "on the same port) while the threads keep going, then load until "
                f'{cfg.w4_after:g} s after the server answers again. "Server answers" = the first '
                "successful plain PyMySQL connect of a separate probe loop (1 ms apart). Acquire "
                f"timeout {cfg.w4_acquire_timeout:g} s where the pool has one (DBUtils has none); "
                "after a failed op a worker pauses 1 ms. Per round values are listed "
                f"({cfg.w4_rounds} rounds, interleaved); live = connections the server has open "
                "for the contender's own user after the load stopped. *Errors (started after "
                "back)*: ops begun after the server answered that failed; *failures seen after "
                "back*: ops that ended in an error after it answered, whenever they began (a "
                "borrower that waited through the outage and still failed)."
            ),
            "",
        ]
        rows = []
        for key, runs in results.items():
            if not runs:
                continue
            rows.append(
                [
                    ad.LABELS[key],
                    ", ".join(f(r.outage, 2) for r in runs),
                    ", ".join(str(r.ops) for r in runs),
                    ", ".join(str(r.errors) for r in runs),
                    ", ".join(str(r.errors_after) for r in runs),
                    ", ".join(str(r.failed_after) for r in runs),
                    ", ".join(
                        "never" if r.first_success_ms is None else f(r.first_success_ms, 1)
                        for r in runs
                    ),
                    ", ".join(str(r.live_server) for r in runs),
                    ", ".join(str(r.stuck) for r in runs),
                ]
            )
            if key == "ours":
                after = max(max(r.errors_after, r.failed_after) for r in runs)
                firsts = [r.first_success_ms for r in runs]
                known = [x for x in firsts if x is not None]
                worst = max(known) if len(known) == len(firsts) else None
                self.target(
                    "W4: no error once the server answers again",
                    f"{after} (worst round)",
                    after == 0,
                )
                self.target(
                    "W4: first success within 5 ms of the server answering",
                    f"{f(worst, 1)} ms (worst round)",
                    None if worst is None else worst <= 5,
                )
        out += table(
            [
                "contender",
                "outage s",
                "ops",
                "errors",
                "errors (started after back)",
                "failures seen after back",
                "first success after back ms",
                "live conns",
                "stuck threads",
            ],
            rows,
        )
        out += [
            "",
            (
                "Errors by kind (all / after the server answered again) and each pool's "
                "own view of its connections afterwards (last round):"
            ),
            "",
        ]
        for key, runs in results.items():
            if not runs:
                continue
            last = runs[-1]
            kinds = ", ".join(f"{k}x{n}" for k, n in sorted(last.error_kinds.items())) or "none"
            after = ", ".join(f"{k}x{n}" for k, n in sorted(last.kinds_after.items())) or "none"
            stats = f"; pool: {last.stats}" if last.stats else ""
            out.append(f"- {ad.LABELS[key]}: {kinds} / {after}{stats}")
        out.append("")

    # --- the end ---

    def targets_section(self) -> None:
        out = self.lines
        out += [
            "## Targets (issue #8; for information, not asserted)",
            "",
            "For ours (defaults).",
            "",
        ]
        out += table(["target", "measured", "verdict"], [list(t) for t in self.targets], right=3)
        out.append("")

    def render(self, meta: dict[str, Any]) -> str:
        head = [
            "# pymysqlpool_registry benchmark",
            "",
            f"- date: {meta['date']}",
            f"- command: `{meta['command']}` (mode: {meta['mode']}; took {meta['took']:.0f} s)",
            (
                f"- machine: {meta['nproc']} CPUs ({meta['cpu']}), load average before "
                f"{meta['load_before']}, after {meta['load_after']}"
            ),
            "- per workload (duration, load average, CPU use averaged over the workload):",
            *(f"  - {line}" for line in meta["load_per_workload"]),
            f"- Python {meta['python']}; {meta['versions']}",
            f"- package: {meta['package']}",
            (
                f"- server: MariaDB {meta['server']} (throwaway, 127.0.0.1, TLS off, one user per "
                "contender)"
            ),
            (
                f"- ours (defaults) plugins: {meta['plugins_default']}; ours (+1 plugin) adds "
                "`CheckoutCounter` (one `pymysqlpool_on_checkout` implementation); installed "
                "plugins not autoloaded (`PYMYSQLPOOL_DISABLE_PLUGIN_AUTOLOAD=1`)"
            ),
            (
                "- every pool: 8 connections opened up front (W3: 4), same connect arguments "
                "(connect_timeout 5 s, read/write_timeout 10 s); pymysql-pool's "
                "`get_connection()` (it polls: 3 retries 0.1 s apart, then raises) is called "
                "again until the acquire timeout; SQLAlchemy disconnects handled as its Engine does (`pool._invalidate`)"
            ),
            (
                "- contenders run interleaved (round 1 A B C …, round 2 … C B A); absolute figures "
                "on this shared machine swing ±30 % between runs, ratios within a run are the "
                "figures to compare"
            ),
            "",
        ]
        if meta["mode"] == "smoke":
            head += ["**Smoke mode: durations are tiny, the figures mean nothing.**", ""]
        return "\n".join([*head, *self.lines, ""])
