"""``make bench``: run every benchmark suite, print one table, write bench/results/latest.json.

    python -m bench                 # everything
    python -m bench --only feed     # one suite (feed, postback, orders, login)
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from bench.report import Record, print_table, write_json

SUITES = ("feed", "postback", "orders", "login")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=SUITES, help="run only these suites")
    args = parser.parse_args(argv)
    records: list[Record] = []
    failed_suites: list[str] = []
    for name in args.only or SUITES:
        started = time.monotonic()
        print(f"[bench] {name} ...", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            got = list(module.run(progress=lambda msg, n=name: print(f"[bench] {n}: {msg}", flush=True)))
        except Exception:
            traceback.print_exc()
            failed_suites.append(name)
            continue
        records.extend(got)
        print(f"[bench] {name} done in {time.monotonic() - started:.0f} s", flush=True)
    print_table(records)
    path = write_json(records)
    print(f"wrote {path}")
    if failed_suites:
        print(f"suites that crashed: {', '.join(failed_suites)}", file=sys.stderr)
    return 1 if failed_suites else 0


if __name__ == "__main__":
    sys.exit(main())
