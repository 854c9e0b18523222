"""Corpus download against a real HTTP server on 127.0.0.1 serving zips built here."""

from __future__ import annotations

import functools
import hashlib
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from clean_shell_support import PROFNER, run

from profner_models.cli.main import main
from profner_models.corpus import load_corpus
from profner_models.corpus.download import DownloadError, Source, download, fetch, safe_extract


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def served(tmp_path, monkeypatch):
    """(folder served, base URL) of a loopback HTTP server; proxies bypassed for it."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _zip(path: Path, members: dict[str, str]) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


PROFNER_MEMBERS = {
    "profner/subtask-1/train.tsv": "tweet_id\tlabel\n1\t1\n2\t0\n",
    "profner/subtask-2/brat/train/1.txt": "Soy médico",
    "profner/subtask-2/brat/train/1.ann": "T1\tPROFESION 4 10\tmédico\n",
    "profner/subtask-2/brat/train/2.txt": "Hola",
    "profner/subtask-2/brat/train/2.ann": "",
}


def test_download_checks_sha256_and_size(served, tmp_path):
    root, base = served
    digest = _zip(root / "c.zip", PROFNER_MEMBERS)
    size = (root / "c.zip").stat().st_size
    assert download(f"{base}/c.zip", tmp_path / "ok.zip", sha256=digest, size=size, progress=False) == digest
    assert (tmp_path / "ok.zip").read_bytes() == (root / "c.zip").read_bytes()
    with pytest.raises(DownloadError, match="sha256"):
        download(f"{base}/c.zip", tmp_path / "bad.zip", sha256="0" * 64, progress=False)
    assert not (tmp_path / "bad.zip").exists()  # a bad download is not left behind
    with pytest.raises(DownloadError, match="bytes"):
        download(f"{base}/c.zip", tmp_path / "bad.zip", size=size + 1, progress=False)
    with pytest.raises(DownloadError, match="404"):
        download(f"{base}/missing.zip", tmp_path / "none.zip", progress=False)


@pytest.mark.parametrize("member", ["../evil.txt", "profner/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt"])
def test_traversal_member_is_rejected_and_nothing_written(served, tmp_path, member):
    root, base = served
    _zip(root / "evil.zip", {"profner/ok.txt": "fine", member: "owned"})
    dest = tmp_path / "dest" / "inner"
    with pytest.raises(DownloadError, match="unsafe archive member"):
        fetch(Source("evil", f"{base}/evil.zip", "."), dest, progress=False, log=lambda _: None)
    assert not (dest / "profner/ok.txt").exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "dest/evil.txt").exists()


def test_symlink_member_is_rejected(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DownloadError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out", progress=False)


def test_cli_download_unpacks_both_corpora(served, tmp_path, capsys):
    root, base = served
    digest = _zip(root / "profner.zip", PROFNER_MEMBERS)
    _zip(root / "meddoprof.zip", {
        "meddoprof-training-set/task1/c1.txt": "Es albañil",
        "meddoprof-training-set/task1/c1.ann": "T1\tPROFESION 3 10\talbañil\n",
    })
    dest = tmp_path / "data"
    code = main(["data", "download", "--dest", str(dest), "--no-progress",
                 "--url-profner", f"{base}/profner.zip", "--sha256-profner", digest,
                 "--url-meddoprof", f"{base}/meddoprof.zip"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"sha256 {digest}" in out
    docs, report = load_corpus(dest / "profner")
    assert report.ok and [d.label for d in docs] == [1, 0] and docs[0].spans[0].text == "médico"
    docs, report = load_corpus(dest / "meddoprof")
    assert report.layout == "meddoprof" and docs[0].spans[0].text == "albañil"
    code = main(["data", "download", "--dest", str(tmp_path / "again"), "--no-progress",
                 "--url-profner", f"{base}/profner.zip", "--sha256-profner", "f" * 64,
                 "--url-meddoprof", f"{base}/meddoprof.zip"])
    assert code == 1 and "sha256" in capsys.readouterr().err


def test_download_runs_from_a_clean_shell(served, tmp_path):
    """``profner data download`` as typed in a fresh shell (``env -i HOME=... PATH=...``): the
    zips fetched, checked and unpacked; a wrong checksum exits 1 with nothing unpacked."""
    root, base = served
    digest = _zip(root / "profner.zip", PROFNER_MEMBERS)
    _zip(root / "meddoprof.zip", {"meddoprof-training-set/task1/c1.txt": "Es albañil",
                                  "meddoprof-training-set/task1/c1.ann": "T1\tPROFESION 3 10\talbañil\n"})
    urls = ["--url-profner", f"{base}/profner.zip", "--url-meddoprof", f"{base}/meddoprof.zip"]
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    done = run([PROFNER, "data", "download", *urls, "--sha256-profner", digest], home, cwd=work)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    docs, report = load_corpus(work / "data" / "profner")  # the default --dest: ./data
    assert report.ok and docs[0].spans[0].text == "médico"
    refused = run([PROFNER, "data", "download", *urls, "--sha256-profner", "f" * 64,
                   "--dest", str(work / "again")], home, cwd=work)
    assert refused.returncode == 1 and "sha256" in refused.stderr
    assert not (work / "again" / "profner").exists()
