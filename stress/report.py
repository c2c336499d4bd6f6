"""The report: the summary table of a run of the suite (:func:`summary_markdown`,
with the totals the README's Reliability section quotes), every figure as
JSON (:func:`report_json`), and the README's table of bad inputs
(:func:`bad_inputs_markdown`).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from stress.procfs import Figures


def _cell(text: str, limit: int = 110) -> str:
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("`", "'")


def bad_inputs_markdown(rows: Sequence[Figures]) -> str:
    """The README table of bad inputs: what each gets."""
    out = [
        "| bad input | command line | exit | what nucleus-trio says (first line) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        command = row["command"].replace("|", "\\|")
        if len(command) > 90:
            command = command[:89] + "…"
        out.append(
            f"| {_cell(row['what'])} | `{command}` | {row['code']} | {_cell(row['message'])} |"
        )
    out.append("")
    out.append(
        "A NUL byte cannot reach the init through `execve` (arguments are C strings): "
        "a caller's argument is cut at the NUL before the init sees it. Through the "
        "library, `parse_args` rejects it: `arguments must not contain NUL bytes`. "
        "Every usage error (exit 2) prints that one line, then the usage line and "
        "`Try 'nucleus-trio --help' for more information.`; never a traceback."
    )
    return "\n".join(out) + "\n"


def _fmt(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def describe(fig: Figures) -> tuple[str, str]:
    """(load, figures) cells of the summary for one scenario."""
    name = fig["scenario"]
    if name == "zombie storm":
        load = f"{_fmt(fig['orphans'])} orphans"
        text = (
            f"peak zombies {_fmt(fig['peak_zombies'])} (children {_fmt(fig['peak_children'])}); "
            f"forked {_fmt(fig['fork_rate'])}/s, reaped {_fmt(fig['reap_rate'])}/s "
            f"(all {_fmt(fig['last_reaped_after_ms'])} ms after the last fork; "
            f"throttled {_fmt(fig['throttled'])}); init CPU {fig['init_cpu_s']} s; "
            + (
                f"backlog of {_fmt(fig['backlog_zombies'])} zombies (made while the init was "
                f"stopped) reaped in {_fmt(fig['backlog_reap_ms'])} ms "
                f"({_fmt(fig['backlog_reap_rate'])}/s); "
                if "backlog_zombies" in fig
                else ""
            )
            + f"RSS {_fmt(fig['rss_before_kib'])} → {_fmt(fig['rss_after_kib'])} KiB; "
            f"fds {fig['fds_before']} → {fig['fds_after']}; "
            f"threads {fig['threads_before']} → {fig['threads_after']}; "
            f"zombies left {fig['zombies_left']}"
        )
    elif name == "signal storm":
        load = f"{_fmt(fig['signals'])} signals, orphans meanwhile"
        text = (
            f"sent {_fmt(fig['sent'])} in {fig['burst_seconds']} s "
            f"({fig['kinds_sent']} kinds, {fig['kinds_forwardable']} forwardable); "
            f"kinds received {fig['kinds_received']}/{fig['kinds_forwardable']}, "
            f"missing {fig['kinds_missing'] or 'none'}, "
            f"unexpected {fig['kinds_unexpected'] or 'none'}; "
            f"{_fmt(fig['orphans_made'])} orphans reaped meanwhile "
            f"(peak zombies {_fmt(fig['peak_zombies'])}); "
            f"RSS {_fmt(fig['rss_before_kib'])} → {_fmt(fig['rss_after_kib'])} KiB; "
            f"zombies left {fig['zombies_left']}"
        )
    elif name.startswith("SIGSTOP"):
        load = f"{_fmt(fig['orphans'])} orphans, {fig['cycles']} stops"
        text = (
            f"stopped {fig['cycles']} times mid-storm, {fig['stopped_seconds']} s in all; "
            f"kinds sent while stopped received {fig['kinds_received']}/{fig['kinds_sent']}; "
            f"peak zombies {_fmt(fig['peak_zombies'])}; zombies left {fig['zombies_left']}"
        )
    elif name.startswith("stdio"):
        load = f"{_fmt(fig['orphans'])} orphans, -w"
        extra = ""
        if "flooded_bytes" in fig:
            extra = f"; {_fmt(fig['flooded_bytes'])} bytes flooded"
        if "prefilled_bytes" in fig:
            extra = f"; pipe prefilled with {_fmt(fig['prefilled_bytes'])} bytes, never read"
        text = (
            f"kinds received {fig['kinds_received']}/{fig['kinds_sent']}; zombies left "
            f"{fig['zombies_left']}; exit {fig['exit_after_term_s']} s after SIGTERM{extra}"
        )
    elif name == "soak":
        load = (
            f"{_fmt(round(fig['seconds']))} s: {_fmt(fig['children'])} children, "
            f"{_fmt(fig['daemons'])} daemons, {_fmt(fig['signals_sent'])} signals"
        )
        text = (
            f"RSS {_fmt(fig['rss_first_kib'])} (start) / {_fmt(fig['rss_after_warmup_kib'])} "
            f"(after warm-up) / {_fmt(fig['rss_max_kib'])} (max) / "
            f"{_fmt(fig['rss_last_kib'])} (end) KiB; fds {fig['fds_range']}; "
            f"threads {fig['threads_range']}; kinds received "
            f"{fig['kinds_received']}/{fig.get('kinds_forwardable', fig['kinds_sent'])} "
            f"(of {fig['kinds_sent']} sent, SIGCHLD kept); init CPU {fig['init_cpu_s']} s; "
            f"zombies left {fig['zombies_left']}"
        )
    elif name == "bad inputs (table)":
        load = f"{fig['runs']} command lines"
        text = f"exit codes {fig['exit_codes']}; tracebacks {fig['tracebacks']}"
    elif name == "fuzzed command lines":
        load = f"{fig['runs']} random command lines and environments"
        text = (
            f"exit codes {fig['exit_codes']}; tracebacks {fig['tracebacks']}; hangs {fig['hangs']}"
        )
    else:
        load, text = "", json.dumps({k: v for k, v in fig.items() if k != "failures"})
    return load, text


def summary_markdown(results: Sequence[Figures], meta: Figures) -> str:
    """The summary table, and the figures the README's Reliability section quotes."""
    lines = [
        f"nucleus-trio stress suite, {meta['mode']} mode, {meta['date']} "
        f"({meta['machine']}); {meta['seconds']:.0f} s in all.",
        "",
        "| scenario | mode | load | figures | exit (expected) | result |",
        "|---|---|---|---|---|---|",
    ]
    for fig in results:
        load, text = describe(fig)
        exit_cell = f"{fig['exit_code']} ({fig['expected_code']})" if "exit_code" in fig else "-"
        result = "ok" if not fig["failures"] else "FAIL: " + "; ".join(fig["failures"])[:300]
        lines.append(
            f"| {fig['scenario']} | {fig['mode']} | {load} | {_cell(text, 900)} | "
            f"{exit_cell} | {_cell(result, 400)} |"
        )
    totals = meta["totals"]
    lines += [
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for key, value in totals.items():
        lines.append(f"| {key} | {_fmt(value)} |")
    return "\n".join(lines) + "\n"


def totals_of(results: Sequence[Figures]) -> Figures:
    storms = [r for r in results if r["scenario"] == "zombie storm"]
    sig = [r for r in results if r["scenario"] == "signal storm"]
    soaks = [r for r in results if r["scenario"] == "soak"]
    cli = [r for r in results if r["scenario"] in ("bad inputs (table)", "fuzzed command lines")]
    totals: Figures = {}
    for storm in storms:
        prefix = f"zombie storm ({storm['mode']})"
        totals[f"{prefix}: orphans"] = storm["made"]
        totals[f"{prefix}: peak zombies"] = storm["peak_zombies"]
        totals[f"{prefix}: reap rate (orphans/s)"] = storm["reap_rate"]
        if "backlog_zombies" in storm:
            totals[f"{prefix}: backlog reaped (zombies in ms)"] = (
                f"{_fmt(storm['backlog_zombies'])} in {_fmt(storm['backlog_reap_ms'])}"
            )
        totals[f"{prefix}: RSS before → after (KiB)"] = (
            f"{_fmt(storm['rss_before_kib'])} → {_fmt(storm['rss_after_kib'])}"
        )
        totals[f"{prefix}: zombies left"] = storm["zombies_left"]
    for storm in sig:
        prefix = f"signal storm ({storm['mode']})"
        totals[f"{prefix}: signals sent"] = storm["sent"]
        totals[f"{prefix}: kinds sent / forwardable / received"] = (
            f"{storm['kinds_sent']} / {storm['kinds_forwardable']} / {storm['kinds_received']}"
        )
        totals[f"{prefix}: exit code (expected)"] = (
            f"{storm['exit_code']} ({storm['expected_code']})"
        )
    for one in soaks:
        totals[f"soak ({one['mode']}): seconds"] = round(one["seconds"])
        totals[f"soak ({one['mode']}): RSS after warm-up → max → end (KiB)"] = (
            f"{_fmt(one['rss_after_warmup_kib'])} → {_fmt(one['rss_max_kib'])} → "
            f"{_fmt(one['rss_last_kib'])}"
        )
        totals[f"soak ({one['mode']}): fds, threads (min, max)"] = (
            f"{one['fds_range']}, {one['threads_range']}"
        )
    totals["bad inputs tried (table + fuzz)"] = sum(r["runs"] for r in cli)
    totals["tracebacks seen"] = sum(int(r.get("tracebacks", 0)) for r in results)
    totals["scenarios failed"] = sum(1 for r in results if r["failures"])
    return totals


def report_json(results: Sequence[Figures], meta: Figures) -> str:
    """Every figure of a run, and its metadata, as the ``--json`` file holds them."""
    return json.dumps({"meta": meta, "results": results}, indent=2) + "\n"


def machine() -> str:
    return (
        f"{os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}, pid_max "
        f"{Path('/proc/sys/kernel/pid_max').read_text().strip()}"
    )
