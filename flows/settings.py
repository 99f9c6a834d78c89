"""Settings from argv and the environment, resolved in one place."""

from __future__ import annotations

import os
from pathlib import Path

from dvmset.catalog import Catalog
from dvmset.layout import DataRoot

DEFAULT_ROOT = "./dvm-data"
SEARCH_HITS_PER_QUERY = 10  # `curate --per-query` and the curate flows' default
STORE_WAIT_S = 600.0  # `takedown --wait`: how long to wait for a features run or export holding the store
DEPLOY_SOURCE_ENV = "VIDMUSICIAN_DEPLOY_SOURCE"


def deploy_source() -> Path:
    """Where `deploy`'s workers load the flows from: $VIDMUSICIAN_DEPLOY_SOURCE, else this checkout (or the
    site-packages root holding flows/cluster/entry.py)."""
    given = os.environ.get(DEPLOY_SOURCE_ENV, "").strip()
    return Path(given) if given else Path(__file__).resolve().parents[1]


def add_root_arg(parser) -> None:  # noqa: ANN001 - argparse.ArgumentParser
    """The ``--root`` option every command takes."""
    parser.add_argument("--root", help="data root (default $VIDMUSICIAN_ROOT or ./dvm-data); "
                                       "$VIDMUSICIAN_DB, when set, names the catalog instead of its SQLite file")


def resolve_root(root: str | os.PathLike[str] | None, *, create: bool = True) -> DataRoot:
    """``--root``, else ``VIDMUSICIAN_ROOT``, else ``./dvm-data`` (its folders made unless ``create=False``)."""
    found = DataRoot(Path(root or os.environ.get("VIDMUSICIAN_ROOT") or DEFAULT_ROOT))
    return found.ensure() if create else found


def existing_root(root: str | os.PathLike[str] | None) -> DataRoot:
    """:func:`resolve_root` for a command that reads a catalog: a root without one (a mistyped ``--root``)
    ends the command with what to do, instead of quietly creating an empty data root there."""
    found = resolve_root(root, create=False)
    if "VIDMUSICIAN_DB" not in os.environ and not found.catalog_path.is_file():
        raise SystemExit(f"vidmusician: no catalog in {found.path}: check --root (or $VIDMUSICIAN_ROOT); "
                         "`vidmusician curate` or `vidmusician demo` makes a data root")
    return found.ensure()


def catalog_url(root: DataRoot) -> str:
    """``VIDMUSICIAN_DB`` (any SQLAlchemy URL, e.g. Postgres) wins over the root's SQLite file."""
    return os.environ.get("VIDMUSICIAN_DB") or root.catalog_url


def open_catalog(root: DataRoot) -> Catalog:
    return Catalog(catalog_url(root))
