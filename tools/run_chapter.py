"""Execute one chapter (Jupytext .md) into an .ipynb with outputs, e.g. a cpu- or full-profile run.

    ANNOTATED_PROFILE=cpu python tools/run_chapter.py book/01_attention.md /tmp/01.ipynb
    ANNOTATED_PROFILE=full torchrun --standalone --nproc_per_node 4 \\
        tools/run_chapter.py book/05_transformer.md _build/full/05_transformer.ipynb

Under torchrun every process executes the chapter in its own kernel (which inherits RANK,
WORLD_SIZE, ... and so trains data-parallel through chapter 2's `fit`); rank 0 writes TARGET,
the others TARGET with `.rank<r>` before the suffix. `--timeout S` limits each cell
(default: 3600 s; 0 for no limit, as long full-profile training cells need).
"""

import argparse
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

from annotated.plumbing import distributed_env


def output_path(target: str, rank: int) -> Path:
    """TARGET for rank 0, TARGET with '.rank<r>' before the suffix for the other processes."""
    path = Path(target)
    return path if rank == 0 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def main(source: str, target: str, timeout: int = 3600) -> None:
    if not Path(source).is_file():
        raise SystemExit(f"no chapter at {source}")
    out = output_path(target, distributed_env().rank)
    out.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(source)
    client = NotebookClient(nb, timeout=timeout or None, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(source).resolve().parent)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, out)
        print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell (0: no limit)")
    args = parser.parse_args()
    main(args.source, args.target, args.timeout)
