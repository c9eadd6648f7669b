"""Keep the book's execution cache honest, and log build times.

`make book` executes the chapters with `execute_notebooks: cache`: jupyter-cache
re-runs a chapter only when its code cells change. A chapter's output also
depends on things outside its cells: the generated package `annotated/`, the
pinned environment, the book's chart renderer (`tools/book_altair.py`), the data
files and the profile. This script fingerprints
those; when the fingerprint differs from the one stored beside the cache, it
deletes the cache so that every chapter runs again.

Usage::

    python tools/book_cache.py guard _build/.jupyter_cache    # before the build
    python tools/book_cache.py log _build START_SECONDS        # after it: append the build time
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY_FILE = "annotated-dependencies.sha256"


def fingerprint(root: Path = ROOT) -> str:
    """SHA-256 over what the outputs depend on besides their cells (see above)."""
    digest = hashlib.sha256()
    files = sorted((root / "annotated").glob("*.py")) + [root / "requirements.txt", root / "pyproject.toml"]
    files += [root / "tools" / "book_altair.py"]  # the HTML every chart becomes
    data = os.environ.get("ANNOTATED_DATA")
    if data and Path(data).is_dir():
        files += sorted(Path(data).glob("*/SHA256SUMS")) + sorted(Path(data).glob("SHA256SUMS"))
    for path in files:
        if path.exists():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(("profile=" + os.environ.get("ANNOTATED_PROFILE", "cpu")).encode())
    return digest.hexdigest()


def guard(cache: Path, root: Path = ROOT) -> str:
    """Delete `cache` when the dependencies changed since it was filled; return what happened."""
    key = fingerprint(root)
    stored = cache / KEY_FILE
    if cache.exists() and stored.exists() and stored.read_text().strip() == key:
        return f"execution cache kept ({cache}): annotated/, environment, data and profile unchanged"
    existed = cache.exists()
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    stored.write_text(key + "\n")
    return (f"execution cache cleared ({cache}): annotated/, environment, data or profile changed"
            if existed else f"execution cache started ({cache})")


def log(build_dir: Path, start: float) -> str:
    """Append this build's wall time to <build_dir>/build-times.jsonl and say it."""
    seconds = time.time() - start
    entry = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
             "profile": os.environ.get("ANNOTATED_PROFILE", "cpu"), "seconds": round(seconds, 1),
             "cpus": os.cpu_count()}
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / "build-times.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")
    return f"book built in {seconds / 60:.1f} min ({seconds:.0f} s, profile {entry['profile']}); " \
           f"logged in {build_dir / 'build-times.jsonl'}"


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "guard":
        print(guard(Path(argv[1])))
        return 0
    if len(argv) == 3 and argv[0] == "log":
        print(log(Path(argv[1]), float(argv[2])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
