"""Execute one chapter (Jupytext .md) into an .ipynb with outputs, e.g. to inspect a cpu-profile run.

    ANNOTATED_PROFILE=cpu python tools/run_chapter.py book/01_attention.md /tmp/01.ipynb
"""

import sys
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient


def main(source: str, target: str, timeout: int = 3600) -> None:
    nb = jupytext.read(source)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(source).resolve().parent)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, target)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
