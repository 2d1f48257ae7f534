"""One file from a URL into the data root: resumable, verified by size and sha256, unpacked into the layout the
readers take. HTTP and the progress bar are huggingface_hub's (``http_get``: Range requests, retries, tqdm); this
module adds what a study needs around them: a ``.part`` file that survives an interruption, a check before the
file is used, and a corrupt download set aside (never used, never silently replaced).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
import zipfile
from pathlib import Path

from workflow_scripts.io import sha256_file


class FetchError(RuntimeError):
    """An input could not be brought to the data root; the message says which and what to do."""


def verify(path: str | os.PathLike, size: int | None, sha256: str | None) -> dict:
    """{size, sha256} of ``path``; raises FetchError when either differs from an expected value (None: unchecked)."""
    actual = {"size": os.path.getsize(path), "sha256": None}
    if size is not None and actual["size"] != size:
        raise FetchError(f"{path}: {actual['size']} bytes, expected {size}")
    actual["sha256"] = sha256_file(path)
    if sha256 is not None and actual["sha256"] != sha256.lower():
        raise FetchError(f"{path}: sha256 {actual['sha256']}, expected {sha256}")
    return actual


def set_aside(path: str | os.PathLike) -> str:
    """Move a file that failed verification to ``<name>.corrupt-<time>`` beside it and return that path: kept for
    inspection, never read as the input, and the next fetch starts clean."""
    aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
    os.replace(path, aside)
    return aside


# A file without a published sha256 is resumed only where the result can still be checked: an archive (every zip
# member and gzip stream carries a CRC, checked after the download); anything else starts over.
CHECKABLE = (".zip", ".tar.gz", ".tgz")


def recorded(dest: str | os.PathLike) -> dict:
    """{size, sha256} recorded beside ``dest`` by its first verified fetch ({} if none): what a later check
    compares with when the sources table publishes neither (trust on first use, kept outside Snakemake's outputs)."""
    try:
        with open(f"{dest}.sha256") as f:
            size, sha = f.read().split()
        return {"size": int(size), "sha256": sha}
    except (OSError, ValueError):
        return {}


def _record(dest: Path, found: dict) -> None:
    tmp = dest.with_name(f".{dest.name}.sha256.tmp")
    tmp.write_text(f"{found['size']} {found['sha256']}\n")
    os.replace(tmp, f"{dest}.sha256")


def _against(size: int | None, sha256: str | None, given: bool) -> str:
    """What a file was checked against, for its receipt (a measured file is not a verified one)."""
    if sha256:
        return "sha256 from the sources table or hub listing" if given else "sha256 recorded at its first fetch"
    if size:
        return "size only (no sha256 published)"
    return "nothing yet: first fetch, size and sha256 recorded now" + (" (archive CRCs read)" if given is None else "")


def verify_present(dest: str | os.PathLike, size: int | None = None, sha256: str | None = None) -> dict:
    """Check a file already in place against the expected size / sha256 (else its first fetch's record; an archive
    with neither has its CRCs read first) and record what it is; raises FetchError, leaving the file where it is
    and recording nothing."""
    first = recorded(dest)
    want_size, want_sha = size or first.get("size"), sha256 or first.get("sha256")
    try:
        found = verify(dest, want_size, want_sha)
        if not want_sha:
            check_archive(dest, Path(dest).name)
    except FetchError as e:
        raise FetchError(f"{e}; it was there before this fetch and is left in place: move it away (or delete it "
                         "and its .sha256 record) to download again") from None
    _record(Path(dest), found)
    return {**found, "checked_against": _against(want_size, want_sha, bool(sha256 or size))}


def download(url: str, dest: str | os.PathLike, size: int | None = None, sha256: str | None = None,
             offline: bool = False, headers: dict | None = None) -> dict:
    """Bring ``url`` to ``dest`` and return its {size, sha256}.

    Expected size / sha256: the arguments, else what the first fetch recorded beside the file. A ``dest`` already
    present is verified and kept (nothing is downloaded). Otherwise the bytes go to ``dest.part``, which a later
    call resumes from its current length where the result can be checked (a known sha256, or an archive's CRCs),
    and are renamed to ``dest`` only once they verify. A download that does not verify is set aside and raises.
    ``offline``: never touch the network; a missing file raises."""
    from huggingface_hub.errors import HfHubHTTPError  # not at the DAG's parse time

    dest = Path(dest)
    if dest.exists():
        return verify_present(dest, size, sha256)
    first = recorded(dest)
    size, sha256 = size or first.get("size"), sha256 or first.get("sha256")
    if offline:
        raise FetchError(f"{dest}: missing, and fetching is offline (fetch.offline: true); source: {url}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have and ((size is not None and have > size) or not (sha256 or dest.name.endswith(CHECKABLE))):
        part.unlink()  # too long, or nothing could tell a damaged prefix: start over
        have = 0
    if size is None or have < size:
        try:
            _get(url, part, have, headers, size, dest.name)
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if not (status == 416 and have):
                raise FetchError(f"{url}: HTTP {status} ({e.__class__.__name__}); the partial file "
                                 f"{part.name} is kept for the next attempt") from None
            # 416: nothing after the part file's end. Complete when the server's length ("bytes */N") is the
            # part's; longer, or no length given: fetch it whole once more (an archive's CRCs ignore trailing bytes)
            total = e.response.headers.get("Content-Range", "").rpartition("/")[2]
            if total != str(have):
                part.unlink()
                try:
                    _get(url, part, 0, headers, size, dest.name)
                except HfHubHTTPError as e2:
                    raise FetchError(f"{url}: HTTP {e2.response.status_code if e2.response is not None else '?'}") \
                        from None
        except Exception as e:  # noqa: BLE001 - connection lost for good, a short transfer: the message says which
            raise FetchError(f"{url}: {e}; the partial file {part.name} is kept for the next attempt") from None
    try:
        found = verify(part, size, sha256)
        if not sha256:
            check_archive(part, dest.name)
    except FetchError as e:
        aside = set_aside(part)
        raise FetchError(f"{url}: the download does not match its record ({e}); set aside as {aside}") from None
    os.replace(part, dest)
    _record(dest, found)
    return {**found, "checked_against": _against(size, sha256, None if dest.name.endswith(CHECKABLE) else False)}


def _get(url: str, part: Path, have: int, headers: dict | None, size: int | None, name: str) -> None:
    from huggingface_hub.file_download import http_get

    with open(part, "ab") as f:
        http_get(url, f, resume_size=have, headers=headers, expected_size=size, displayed_filename=name)


def check_archive(path: str | os.PathLike, name: str) -> None:
    """Read every member of a zip / gzip archive through its CRC; raises FetchError on the first bad one."""
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise FetchError(f"{path}: member {bad} fails its CRC check")
        elif name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path) as t:
                for member in t:
                    if member.isfile():
                        t.extractfile(member).read()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise FetchError(f"{path}: not a readable archive ({e})") from None


def unpack(archive: str | os.PathLike, into: str | os.PathLike, members: str | None = None,
           makes: list[str] | None = None) -> list[str]:
    """Extract a .zip / .tar(.gz) into ``into`` (only entries under the prefix ``members`` when given) and return
    the top-level names it created; raises FetchError when it lacks one of ``makes`` (what the sources table
    says it creates, and how an unpacked copy is recognised later). Extraction goes to a temporary folder beside
    them first, so an interrupted unpack leaves no half-filled folder under the name the readers look for."""
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    for stale in into.glob(f".unpack-{Path(archive).name}.tmp*"):  # left by an unpack killed hard
        shutil.rmtree(stale, ignore_errors=True)
    tmp = into / f".unpack-{Path(archive).name}.tmp{os.getpid()}"
    tmp.mkdir()
    try:
        name = str(archive)
        try:
            if name.endswith(".zip"):
                with zipfile.ZipFile(archive) as z:
                    z.extractall(tmp, [m for m in z.namelist() if members is None or m.startswith(members)])
            elif name.endswith((".tar", ".tar.gz", ".tgz")):
                with tarfile.open(archive) as t:
                    t.extractall(tmp, [m for m in t.getmembers() if members is None or m.name.startswith(members)],
                                 filter="data")
            else:
                raise FetchError(f"{archive}: not an archive this fetcher unpacks (.zip, .tar, .tar.gz)")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
            raise FetchError(f"{archive}: the archive is damaged ({e}): move it away (or delete it and its "
                             ".sha256) and rerun to download it again") from None
        made = sorted(p.name for p in tmp.iterdir())
        if not made:
            raise FetchError(f"{archive}: no entries{f' under {members!r}' if members else ''}")
        missing = sorted(set(makes or []) - set(made))
        if missing:
            raise FetchError(f"{archive}: holds {made[:5]}, not {missing} (unpack.makes in the sources table)")
        for top in made:
            target = into / top
            if target.is_dir():  # a folder another archive filled too (COCO's train2014 + val2014 under coco/)
                shutil.copytree(tmp / top, target, dirs_exist_ok=True, copy_function=os.replace)
            else:
                if target.exists():
                    target.unlink()
                os.replace(tmp / top, target)
        return made
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
