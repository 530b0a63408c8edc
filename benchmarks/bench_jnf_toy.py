"""Training throughput and peak memory of the JNF toy stages (kept for ``make bench``).

A thin front end of ``bench_models.py`` restricted to the JNF toy stages; the options are the
same, and ``--stages`` takes the short stage names::

    python benchmarks/bench_jnf_toy.py                    # CPU, 1 and 2 threads
    python benchmarks/bench_jnf_toy.py --threads 2 --stages joint flow
    python benchmarks/bench_jnf_toy.py --device cuda      # on a GPU machine
    python benchmarks/bench_jnf_toy.py --json runs/bench/jnf_toy_cpu.json
"""

from __future__ import annotations

import sys

import bench_models

STAGES = tuple(entry.split("/")[1] for entry in bench_models.JNF_STAGES)


def main(argv: list[str]) -> int:
    """Translate ``--stages a b`` into ``--only jnf/a jnf/b`` and run ``bench_models``."""
    out, stages, i = [], list(STAGES), 0
    while i < len(argv):
        if argv[i] == "--stages":
            stages, i = [], i + 1
            while i < len(argv) and not argv[i].startswith("--"):
                if argv[i] not in STAGES:
                    print(f"unknown stage {argv[i]!r}; choose from {STAGES}", file=sys.stderr)
                    return 2
                stages.append(argv[i])
                i += 1
        else:
            out.append(argv[i])
            i += 1
    return bench_models.main([*out, "--only", *(f"jnf/{s}" for s in stages)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
