"""How much of each chapter's code is engineering rather than teaching (issue 13's measure).

A code cell counts as engineering when its code (comments and strings aside) names the
machinery of checkpoints, resuming, data-parallel training, results files or shipped weights
(the names below); the share is the code lines of such cells over all code lines of the
chapter (hidden bootstrap cells excluded).

    python tools/engineering_share.py [--max 0.10]   # exits 1 when a chapter is above --max
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tokenize
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parent.parent
ENGINEERING = re.compile(
    r"checkpoint|resum|save_results|load_results|results_dir|load_shipped|save_shipped|"
    r"save_compact|load_compact|weights_dir|torchrun|distributed|DistributedDataParallel|"
    r"rng_states|process_share", re.IGNORECASE)


def names(source: str) -> str:
    """The identifiers of a cell's code, comments and string literals left out."""
    code = "\n".join(line for line in source.splitlines() if not line.startswith(("%", "!")))
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return code
    return " ".join(t.string for t in tokens if t.type == tokenize.NAME)


def share(path: Path) -> tuple[int, int]:
    """(engineering code lines, all code lines) of one chapter."""
    engineering = total = 0
    for cell in jupytext.read(path).cells:
        if cell.cell_type != "code" or "remove-cell" in cell.metadata.get("tags", []):
            continue
        lines = [line for line in cell.source.splitlines() if line.strip()]
        total += len(lines)
        engineering += len(lines) if ENGINEERING.search(names(cell.source)) else 0
    return engineering, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=float, default=None, help="fail above this share")
    parser.add_argument("chapters", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.chapters or sorted((ROOT / "book").glob("0*.md"))
    worst = 0.0
    for path in paths:
        eng, total = share(path)
        worst = max(worst, eng / max(total, 1))
        print(f"{path.name:24} {eng:4d} / {total:4d} code lines = {eng / max(total, 1):5.1%}")
    return 1 if args.max is not None and worst > args.max else 0


if __name__ == "__main__":
    sys.exit(main())
