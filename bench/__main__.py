"""`python -m bench`: run every benchmark module in MODULES, in order, each with its default arguments.

Add a benchmark by appending its module name here.
"""

from __future__ import annotations

import runpy
import sys
import traceback

MODULES = [
    "bench.movielens",
    "bench.feature_job",
    "bench.synth",
    "bench.commerce_import",
    "bench.uplift",
    "bench.ab",
    "bench.ab_round2",
    "bench.serving",
    "bench.logistics",
    "bench.faults",
    "bench.next_basket",
    "bench.sessions",
    "bench.console",
    "bench.memory",
    "bench.look_alikes",
]


def main() -> int:
    failed = []
    for name in MODULES:
        print(f"\n=== {name}", flush=True)
        sys.argv = [name]  # each bench parses its own (default) arguments
        try:
            runpy.run_module(name, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            if exc.code not in (0, None):
                failed.append(name)
        except Exception:
            traceback.print_exc()
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
