#!/usr/bin/env python3
"""Turns the raw measurements of benches/compare.sh into the comparison table.

Input (all written by compare.sh into WORK):
  steps.tsv  one line per timed step: tool, phase, day, wall s, user s, sys s, peak RSS KiB, bytes
             phases: init, kdf, dump1, dump1x (extra first dumps), dumpN, web1, webN, restore_dump, restore_tree, check
  meta.tsv   key<TAB>value lines (header facts); `version<TAB>tool<TAB>text`, `size<TAB>tool<TAB>bytes`,
             `note<TAB>text` and `tools<TAB>a,b,c` may repeat

Output: WORK/results.md (also printed to stdout) and WORK/results.json (raw numbers and every step).
Usage:  compare_report.py WORK
"""

import json
import os
import statistics
import sys

MB = 1e6  # figures in MB are 10^6 bytes
MIB = 1024.0

BACKUP_PHASES = ("dump1", "dumpN", "web1", "webN")
RESTORE_PHASES = ("restore_dump", "restore_tree")


def read_meta(path):
    meta = {"versions": {}, "sizes": {}, "notes": [], "tools": []}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                continue
            key = parts[0]
            if key == "version":
                meta["versions"][parts[1]] = parts[2] if len(parts) > 2 else ""
            elif key == "size":
                meta["sizes"][parts[1]] = int(parts[2])
            elif key == "note":
                meta["notes"].append("\t".join(parts[1:]))
            elif key == "tools":
                meta["tools"] = [t for t in parts[1].split(",") if t]
            else:
                meta[key] = "\t".join(parts[1:])
    return meta


def read_steps(path):
    steps = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) != 8:
                continue
            steps.append(
                {
                    "tool": p[0],
                    "phase": p[1],
                    "day": int(p[2]),
                    "wall_s": float(p[3]),
                    "user_s": float(p[4]),
                    "sys_s": float(p[5]),
                    "max_rss_kib": int(p[6]),
                    "bytes": int(p[7]),
                }
            )
    return steps


# Tools that open their repository with a passphrase in every timed step, so each step includes the KDF.
# bupstash uses a key file and sopvault (in compare.sh) a machine secret: their steps pay none.
KDF_IN_TIMED_STEPS = {"restic", "borg", "rustic"}


def figures_for(tool, steps, size):
    """Raw figures of one tool (None where the tool has no such step)."""
    mine = [s for s in steps if s["tool"] == tool]

    def sel(*phases):
        return [s for s in mine if s["phase"] in phases]

    def wall(ss):
        return sum(s["wall_s"] for s in ss) if ss else None

    def cpu(ss):
        return sum(s["user_s"] + s["sys_s"] for s in ss) if ss else None

    def nbytes(ss):
        return sum(s["bytes"] for s in ss)

    def rate(ss):
        w = wall(ss)
        return nbytes(ss) / MB / w if ss and w > 0 else None

    def rss(ss):
        return max(s["max_rss_kib"] for s in ss) / MIB if ss else None

    def median_wall(ss):
        return statistics.median(s["wall_s"] for s in ss) if ss else None

    def restore_rate(dumps, trees):
        """Bytes of one dump and one tree over the sum of the median times."""
        if not dumps or not trees:
            return None
        w = median_wall(dumps) + median_wall(trees)
        return (dumps[0]["bytes"] + trees[0]["bytes"]) / MB / w if w > 0 else None

    kdf_runs = sel("kdf")
    kdf = statistics.median(s["wall_s"] for s in kdf_runs) if kdf_runs else None
    web_later = sel("webN")
    web_daily = wall(web_later) / len(web_later) if web_later else None
    f = {
        # The median over the first snapshot of the series and the extra samples in scratch repositories.
        "dump_first_mb_s": (
            statistics.median(s["bytes"] / MB / max(s["wall_s"], 0.005) for s in sel("dump1") + sel("dump1x"))
            if sel("dump1")
            else None
        ),
        "dump_later_mb_s": rate(sel("dumpN")),
        "dump_later_s_per_day": (wall(sel("dumpN")) / len(sel("dumpN"))) if sel("dumpN") else None,
        "web_first_s": wall(sel("web1")),
        "web_later_total_s": wall(web_later),
        "web_daily_s": web_daily,
        "kdf_s": kdf,
        # A tool whose timed steps pay no KDF (bupstash: key file; sopvault: machine secret) has nothing to subtract.
        "web_daily_minus_kdf_s": (
            (web_daily - (kdf or 0.0) if tool in KDF_IN_TIMED_STEPS else web_daily) if web_daily is not None else None
        ),
        "backup_total_s": wall(sel(*BACKUP_PHASES)),
        # Restores run in rounds: each figure is the median over the rounds.
        "restore_dump_s": median_wall(sel("restore_dump")),
        "restore_tree_s": median_wall(sel("restore_tree")),
        "restore_mb_s": restore_rate(sel("restore_dump"), sel("restore_tree")),
        "check_s": wall(sel("check")),
        "peak_rss_snapshot_mib": rss(sel(*BACKUP_PHASES)),
        "peak_rss_restore_mib": rss(sel(*RESTORE_PHASES)),
        "peak_rss_check_mib": rss(sel("check")),
        "repo_size_mb": size / MB if size is not None else None,
        "cpu_backup_s": cpu(sel(*BACKUP_PHASES)),
        "cpu_restore_s": (
            statistics.median(cpu([x]) for x in sel("restore_dump"))
            + statistics.median(cpu([x]) for x in sel("restore_tree"))
            if sel("restore_dump") and sel("restore_tree")
            else None
        ),
        "cpu_check_s": cpu(sel("check")),
    }
    return f


# key, label, better ("higher" or "lower"), decimals
ROWS = [
    ("dump_first_mb_s", "dump snapshot, first day (MB/s, median over fresh repositories)", "higher", 1),
    ("dump_later_mb_s", "dump snapshots, later days (MB/s, total bytes / total wall)", "higher", 1),
    ("dump_later_s_per_day", "dump snapshot, later days (s per day)", "lower", 2),
    ("web_first_s", "web tree snapshot, first day (s)", "lower", 2),
    ("web_daily_s", "web tree daily rerun, few changes (s per day, mean of later days)", "lower", 3),
    ("web_later_total_s", "web tree, later days summed (s)", "lower", 2),
    ("kdf_s", "passphrase KDF + open: listing an empty repository (s, median over the run)", "lower", 3),
    ("web_daily_minus_kdf_s", "web tree daily rerun minus KDF row (s per day)", "lower", 3),
    ("backup_total_s", "all snapshots, dumps + web, all days (wall s)", "lower", 1),
    ("restore_mb_s", "restore throughput, last dump + last tree (MB/s, from the median times)", "higher", 1),
    ("restore_dump_s", "restore last dump (s, median over the rounds)", "lower", 2),
    ("restore_tree_s", "restore last tree (s, median over the rounds)", "lower", 2),
    ("check_s", "full data check (s)", "lower", 2),
    ("peak_rss_snapshot_mib", "peak RSS during snapshot (MiB, max over all snapshot steps)", "lower", 1),
    ("peak_rss_restore_mib", "peak RSS during restore (MiB)", "lower", 1),
    ("peak_rss_check_mib", "peak RSS during check (MiB)", "lower", 1),
    ("repo_size_mb", "repository size after all days (MB, du -sb)", "lower", 1),
    ("cpu_backup_s", "CPU time of all snapshots (user+sys s)", "lower", 1),
    ("cpu_restore_s", "CPU time of the restores (user+sys s, median dump + median tree)", "lower", 2),
    ("cpu_check_s", "CPU time of the check (user+sys s)", "lower", 1),
]


def fmt(v, decimals):
    return "n/a" if v is None else f"{v:.{decimals}f}"


def na_reason(tool, key):
    if tool == "bupstash" and key == "kdf_s":
        return "n/a (key file, no KDF)"
    if tool == "bupstash" and key in ("check_s", "peak_rss_check_mib", "cpu_check_s"):
        return "n/a (no full check)"
    return "n/a"


def ratio_cell(key, better, tools, figs):
    if "sopvault" not in figs:
        return "–"
    mine = figs["sopvault"].get(key)
    peers = [(t, figs[t].get(key)) for t in tools if t != "sopvault" and figs[t].get(key) is not None]
    if mine is None or not peers:
        return "n/a"
    pick = max if better == "higher" else min
    best_tool, best = pick(peers, key=lambda p: p[1])
    if best <= 0:
        return f"n/a (best {best_tool} = {best:g})"
    return f"{mine / best:.2f} ({best_tool})"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: compare_report.py WORK")
    work = sys.argv[1]
    meta = read_meta(os.path.join(work, "meta.tsv"))
    steps = read_steps(os.path.join(work, "steps.tsv"))
    tools = meta["tools"]
    figs = {t: figures_for(t, steps, meta["sizes"].get(t)) for t in tools}

    out = []
    out.append(f"# sopvault vs peers — {meta.get('days', '?')} days of the corpus")
    out.append("")
    out.append(f"- date: {meta.get('date', '?')}")
    out.append(f"- host: `{meta.get('uname', '?')}`; nproc {meta.get('nproc', '?')}; {meta.get('mem', '')}")
    out.append(f"- load average (1/5/15 min) at start: {meta.get('load_start', '?')}; at end: {meta.get('load_end', '?')}")
    out.append(f"- command: `{meta.get('cmdline', '?')}`")
    out.append(f"- corpus: `{meta.get('corpus', '?')}` — {meta.get('corpus_params', '')}")
    out.append(f"- work dir (all repositories, same file system): `{meta.get('work', '?')}` on {meta.get('work_fs', '?')}")
    out.append(f"- input per tool: {meta.get('input_summary', '')}")
    if meta.get("elapsed"):
        out.append(f"- run time: {meta['elapsed']}")
    out.append("- versions:")
    for t in tools:
        out.append(f"  - {t}: {meta['versions'].get(t, '?')}")
    out.append("- settings:")
    for n in meta["notes"]:
        out.append(f"  - {n}")
    out.append("")
    header = ["figure", "better"] + tools + ["sopvault ÷ best peer (peer)"]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(["---"] * 2 + ["---:"] * len(tools) + ["---:"]) + "|")
    for key, label, better, dec in ROWS:
        cells = [label, better]
        for t in tools:
            v = figs[t].get(key)
            cells.append(fmt(v, dec) if v is not None else na_reason(t, key))
        cells.append(ratio_cell(key, better, tools, figs))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append(
        "Ratio column: sopvault's value divided by the best peer's value for that figure. For rows marked "
        "`higher` (throughput) a ratio above 1 means sopvault is better; for rows marked `lower` (time, size, "
        "memory) a ratio below 1 means sopvault is better. MB = 10^6 bytes, MiB = 2^20 bytes. Wall times are "
        "`/usr/bin/time` %e of the tool's process (rsync staging, page-cache warm-up and byte-for-byte "
        "verification are not counted). The KDF row is the median wall time of a listing command on an empty "
        "twin of the repository (process start + key derivation + opening + listing), measured 3 times at the "
        "start and once a day in the tools' rotation, so it sees the same load as the daily runs; the "
        "`minus KDF` row subtracts it from the mean daily web run of the tools that open their repository with a "
        "passphrase in every step (restic, borg, rustic). bupstash opens its repository with a key file and "
        "sopvault with a machine secret (`key add --secret-file`, added after init), so their timed steps pay no "
        "KDF; sopvault's KDF row times its passphrase, which a command run with it instead would add. Repository sizes of one run carry noise of their own: restic (chunker "
        "polynomial), borg (chunker seed) and bupstash (keyed gear table) draw their chunker parameters at random "
        "per repository, and with their large chunks (about 1-2 MiB for restic and borg) the stored size of the "
        "dump series moves by about ±10% from one fresh repository to the next (30 dumps into 3 fresh repositories "
        "each: restic 202-224 MB, borg 249-287 MB); sopvault's 64 KiB chunks moved by <0.2% between runs. "
        "Timings come from one run on a shared machine; compare ratios, not the last digit."
    )
    text = "\n".join(out) + "\n"
    with open(os.path.join(work, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    result = {
        "meta": {k: v for k, v in meta.items()},
        "figures": figs,
        "rows": [{"key": k, "label": l, "better": b} for k, l, b, _ in ROWS],
        "steps": steps,
    }
    with open(os.path.join(work, "results.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, sort_keys=False)
        f.write("\n")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
