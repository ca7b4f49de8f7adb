"""``make bench``: run every benchmark suite, print one table, write bench/results/latest.json.

    python -m bench                 # everything
    python -m bench --only feed     # one suite (orders, login, feed, postback, account, safety, derivatives, scale, redis_ha)

Each suite module ``bench.<name>`` exposes ``run(progress) -> Iterable[Record]``. Pictures go to
bench/results/*.png (bench/pictures.py). ``scale`` (bench/scale.py) is the many-accounts suite:
pooled workers beside one worker per account at 1-100 accounts, fan-out, the paper broker's CPU.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from bench.report import RESULTS_DIR, Record, markdown_table, merged, print_table, write_json

SUITES = ("orders", "login", "feed", "postback", "account", "safety", "derivatives", "scale", "redis_ha")


def _pictures(records: list[Record]) -> None:
    """Pictures drawn from a suite's records (the orders suite draws its own while it runs):
    the feed's reconnect gaps, when its record carries them (``extra["gaps_ms"]``)."""
    for r in records:
        gaps = r.extra.get("gaps_ms")
        if r.name.startswith("reconnect") and gaps:
            try:
                from bench.pictures import RESULTS_DIR, plot_reconnect_gaps

                anchor_ms = r.anchor_value * 1000 if r.anchor_value else None
                path = plot_reconnect_gaps(gaps, RESULTS_DIR / "reconnect_gaps.png", anchor_ms=anchor_ms)
                print(f"[bench] picture {path}", flush=True)
            except Exception:
                traceback.print_exc()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=SUITES, help="run only these suites")
    args = parser.parse_args(argv)
    records: list[Record] = []
    failed_suites: list[str] = []
    for name in args.only or SUITES:
        started = time.monotonic()
        print(f"[bench] {name} ...", flush=True)
        got: list[Record] = []
        try:
            module = importlib.import_module(f"bench.{name}")
            # Collect as they come: a suite that crashes half-way keeps the records it made.
            for rec in module.run(progress=lambda msg, n=name: print(f"[bench] {n}: {msg}", flush=True)):
                rec.suite = name
                got.append(rec)
        except Exception:
            traceback.print_exc()
            failed_suites.append(name)
        records.extend(got)
        _pictures(got)
        if name in failed_suites:
            continue
        print(f"[bench] {name} done in {time.monotonic() - started:.0f} s", flush=True)
    print_table(records)
    # A partial run (--only) refreshes its own rows of latest.json and keeps the others.
    everything = merged(records, args.only or SUITES)
    path = write_json(everything)
    (RESULTS_DIR / "latest.md").write_text(markdown_table(everything))
    print(f"wrote {path} and {RESULTS_DIR / 'latest.md'}")
    if failed_suites:
        print(f"suites that crashed: {', '.join(failed_suites)}", file=sys.stderr)
    return 1 if failed_suites else 0


if __name__ == "__main__":
    sys.exit(main())
