"""Make the providers pyproject.toml registers visible when the installed metadata predates them.

`pip install -e .` writes the `vidgate.providers` entry points into the environment's metadata; a checkout run
with PYTHONPATH=. against an older install would not see a provider added since. When the installed table
differs from pyproject.toml's, a distribution carrying pyproject's table is put ahead of it on sys.path (and on
PYTHONPATH, for the servers tests start), exactly as a reinstall would register it. Nothing happens after a
fresh `pip install -e .` (`make dev`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUP = "vidgate.providers"


def declared() -> dict[str, str]:
    """The provider table of pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return dict(project["entry-points"][GROUP])


def write_distribution(folder: Path, name: str, points: dict[str, str]) -> Path:
    """A minimal installed distribution `name` under folder, registering `points` in the providers group."""
    dist = folder / f"{name.replace('-', '_')}-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[{GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    return dist


def register_source_providers() -> Path | None:
    """Put pyproject's provider table ahead of a stale installed one; the folder used, or None when current."""
    table = declared()
    installed: dict[str, str] = {}
    for point in metadata.entry_points(group=GROUP):
        installed.setdefault(point.name, point.value)
    if all(installed.get(name) == value for name, value in table.items()):
        return None
    folder = Path(tempfile.mkdtemp(prefix="vidgate-providers-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    write_distribution(folder, "vidgate-source-providers", table)
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return folder
