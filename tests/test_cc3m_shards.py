"""CC3M download through the real img2dataset (file:// and a loopback http server), resume, shard reading."""

import functools
import http.server
import json
import os
import threading
from pathlib import Path

import pytest
import torch
import webdataset as wds

from workflow_scripts import study
from workflow_scripts.data import cc3m
from workflow_scripts.data.captions import CaptionCollator, CaptionStream
from workflow_scripts.data.readers import DataFormatError, read_cc3m_tsv
from workflow_scripts.data.shards import ShardStream, UndecodableImageError, held_out_samples
from workflow_scripts.toyworld.toy_vision import image_processor

pytestmark = pytest.mark.slow


def _download(tsv, shards, summary, *extra):
    cc3m.main(["--tsv", str(tsv), "--shards", str(shards), "--summary", str(summary), "--image-size", "64",
               "--per-shard", "10", "--threads", "4", *extra])
    return json.loads(Path(summary).read_text())


def _expected_ok(rows):
    return sum(1 for r in rows if Path(r.url.removeprefix("file://")).exists() and "corrupt" not in r.url)


@pytest.fixture(scope="module")
def downloaded(smoke_world, tmp_path_factory):
    config, _ = smoke_world
    out = tmp_path_factory.mktemp("cc3m")
    tsv = study.data_path(config, "cc3m_tsv")
    summary = _download(tsv, out / "shards", out / "summary.json", "--allow-file-urls")
    return config, out, summary


def test_download_counts_dead_and_corrupt_without_failing(downloaded):
    config, out, summary = downloaded
    rows = read_cc3m_tsv(study.data_path(config, "cc3m_tsv"))
    assert summary["requested"] == len(rows)
    assert summary["downloaded"] == _expected_ok(rows)
    assert summary["failed_to_download"] == config["toy_world"]["counts"]["cc3m_dead_urls"]
    assert summary["failed_to_resize"] == 1  # the corrupt JPEG
    assert "Image decoding error" in summary["failed_by_reason"]
    assert len(summary["shards"]) == -(-len(rows) // 10)
    assert (out / "shards" / "00000.parquet").exists()  # img2dataset's own metadata is kept


def test_file_urls_refused_unless_allowed_and_subset_filters(smoke_world, tmp_path):
    config, _ = smoke_world
    tsv, subset = study.data_path(config, "cc3m_tsv"), study.data_path(config, "cc3m_subset")
    with pytest.raises(DataFormatError, match=r"line 2: URL scheme 'file' not allowed"):
        cc3m.select_rows(tsv, None, allow_file_urls=False)
    chosen = cc3m.select_rows(tsv, subset, allow_file_urls=True)
    ids = {r["id"] for r in json.loads(Path(subset).read_text())}
    assert {g for _, _, g in chosen} == ids


def test_rerun_resumes_instead_of_starting_over(downloaded, tmp_path):
    config, out, first = downloaded
    shards = out / "shards"
    kept = shards / "00000.tar"
    stamp = kept.stat().st_mtime_ns
    for suffix in (".tar", "_stats.json", ".parquet"):  # as if the job died while writing the last shard
        (shards / f"{first['shards'][-1][:-4]}{suffix}").unlink()
    again = _download(study.data_path(config, "cc3m_tsv"), shards, out / "summary2.json", "--allow-file-urls")
    assert again["downloaded"] == first["downloaded"] and again["shards"] == first["shards"]
    assert kept.stat().st_mtime_ns == stamp  # finished shards were not fetched again


def test_download_over_loopback_http(smoke_world, tmp_path):
    config, _ = smoke_world
    rows = read_cc3m_tsv(study.data_path(config, "cc3m_tsv"))[:12]
    web = Path(rows[0].url.removeprefix("file://")).parent
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(web))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        tsv = tmp_path / "http.tsv"
        base = f"http://127.0.0.1:{server.server_address[1]}"
        tsv.write_text("caption\turl\n" + "".join(f"{r.caption}\t{base}/{Path(r.url).name}\n" for r in rows))
        summary = _download(tsv, tmp_path / "shards", tmp_path / "summary.json")
    finally:
        server.shutdown()
    assert summary["downloaded"] == _expected_ok(rows) and summary["downloaded"] > 0
    assert summary["failed_to_download"] + summary["failed_to_resize"] == len(rows) - summary["downloaded"]


def test_shard_stream_reads_back_everything_in_the_same_order_every_time(downloaded):
    _, out, summary = downloaded
    stream = ShardStream(str(out / "shards"))
    samples = list(stream)
    assert len(samples) == len(stream) == summary["downloaded"] and stream.skipped == 0
    image = samples[0].decode()
    assert samples[0].caption and image.size[0] <= 64 and samples[0].meta["gcc_id"].startswith("GCC")
    assert samples[0].shard.endswith("00000.tar")
    # Every rank reads this same stream (accelerate hands each its micro-batches): no rank-dependent order.
    assert [s.key for s in ShardStream(str(out / "shards"))] == [s.key for s in samples]


def test_shard_stream_refuses_dataloader_workers(downloaded):
    """Each DataLoader worker would read the whole stream: samples would repeat silently."""
    _, out, _ = downloaded
    loader = torch.utils.data.DataLoader(ShardStream(str(out / "shards")), batch_size=None, num_workers=1)
    with pytest.raises(RuntimeError, match="dataloader_num_workers 0"):
        list(loader)


def test_undecodable_sample_keeps_its_place_without_loss_and_is_counted(downloaded, tmp_path, toy_tokenizer):
    """Empty image bytes are left out of the stream (every rank sees that); a truncated JPEG or a non-image is
    found when its rank decodes it: blank pixels, no supervised token, counted, named in the log."""
    _, out, _ = downloaded
    good = next(iter(wds.WebDataset(str(out / "shards" / "00000.tar"), shardshuffle=False, nodesplitter=None,
                                    workersplitter=None)))
    os.makedirs(tmp_path / "bad")
    with wds.TarWriter(str(tmp_path / "bad" / "00000.tar")) as sink:
        sink.write({"__key__": "a", "jpg": good["jpg"], "txt": b"fine"})
        sink.write({"__key__": "b", "jpg": good["jpg"][:50], "txt": b"truncated"})
        sink.write({"__key__": "c", "jpg": b"", "txt": b"zero bytes"})
        sink.write({"__key__": "d", "jpg": b"<html>not an image</html>", "txt": b"not an image"})
        sink.write({"__key__": "e", "jpg": good["jpg"], "txt": b"also fine"})
    stream = ShardStream(str(tmp_path / "bad"))
    samples = list(stream)
    assert [s.caption for s in samples] == ["fine", "truncated", "not an image", "also fine"]
    assert stream.skipped == 1
    with pytest.raises(UndecodableImageError, match=r"sample b of .*00000\.tar \(50 bytes\)"):
        samples[1].decode()
    image_token = len(toy_tokenizer) - 1
    captions = CaptionStream(stream, toy_tokenizer, image_token, 4, 64, global_batch=2)
    items = list(captions)
    assert len(items) == len(captions) == 4
    collator = CaptionCollator(image_processor(64), pad_token_id=0)
    batch = collator(items)
    assert collator.skipped == 2
    supervised = (batch["labels"] != -100).sum(dim=1).tolist()
    assert supervised[0] > 0 and supervised[3] > 0 and supervised[1] == supervised[2] == 0
    assert batch["pixel_values"][1].abs().sum() == 0 and batch["pixel_values"][0].abs().sum() > 0


def test_caption_stream_releases_whole_global_batches_only(downloaded, toy_tokenizer):
    """N ranks must see whole global batches: an epoch's last partial one is dropped (and counted)."""
    _, out, summary = downloaded
    image_token = len(toy_tokenizer) - 1
    captions = CaptionStream(ShardStream(str(out / "shards")), toy_tokenizer, image_token, 4, 64, global_batch=16)
    items = list(captions)
    assert len(items) == len(captions) == summary["downloaded"] // 16 * 16
    assert captions.dropped_tail == summary["downloaded"] % 16
    with pytest.raises(ValueError, match="do not fill one global batch of 64"):
        CaptionStream(ShardStream(str(out / "shards")), toy_tokenizer, image_token, 4, 64, global_batch=64)


def test_training_order_does_not_depend_on_download_order(downloaded, tmp_path):
    """img2dataset writes a shard in download-completion order; the stream yields the same order for two
    shards holding the same samples written in different orders."""
    _, out, _ = downloaded
    samples = list(wds.WebDataset(str(out / "shards" / "00000.tar"), shardshuffle=False, nodesplitter=None,
                                  workersplitter=None))[:6]
    orders = {"as_written": samples, "reversed": samples[::-1], "shuffled": [samples[i] for i in (3, 0, 5, 1, 4, 2)]}
    seen = {}
    for name, order in orders.items():
        os.makedirs(tmp_path / name)
        with wds.TarWriter(str(tmp_path / name / "00000.tar")) as sink:
            for s in order:
                sink.write({k: v for k, v in s.items() if not k.startswith("__") or k == "__key__"})
        stream = ShardStream(str(tmp_path / name))
        seen[name] = [s.key for s in stream]
    assert seen["as_written"] == seen["reversed"] == seen["shuffled"] == sorted(s["__key__"] for s in samples)


def test_shuffled_epochs_differ_repeat_and_never_read_the_held_out_tail(downloaded):
    """stage1.shuffle: each epoch has its own order, drawn from (seed, epoch), so a rerun or a resume reads the
    same; the held-out tail stays out of every epoch; unshuffled, every epoch is key order."""
    _, out, _ = downloaded
    folder = str(out / "shards")

    def keys(epoch, seed=7, holdout=2):
        stream = ShardStream(folder, holdout=holdout, shuffle_seed=seed)
        stream.set_epoch(epoch)
        return [s.key for s in stream]

    plain = ShardStream(folder, holdout=2)
    in_order = [s.key for s in plain]
    plain.set_epoch(1)
    assert [s.key for s in plain] == in_order
    held = {s.key for s in held_out_samples(plain)}
    assert len(held) == 2 and not held & set(in_order)
    first, second = keys(0), keys(1)
    assert first != second and first != in_order
    assert sorted(first) == sorted(second) == sorted(in_order)  # the same samples, held-out tail excluded
    assert keys(1) == second and keys(1, seed=8) != second
