"""tools.loadtest: a small load test against the real app.py in a subprocess (tiny checkpoints, so it
does not depend on what pretrained/ holds), plus its checks on hand-made answers and timelines."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

from tests.app_fixtures import SAMPLE, tiny_checkpoints  # noqa: E402
from tools import loadtest  # noqa: E402


@pytest.mark.slow
def test_small_load_no_errors_one_run_at_a_time(tmp_path):
    # 4 clients x 2 requests at 3 steps: a queue forms behind the one model slot in ~25 s on 2 cores
    report = loadtest.run_loadtest(clients=4, requests=2, steps=3, pretrained=str(tiny_checkpoints(tmp_path)))
    assert report["settings"]["arch"] == "perceiver_io"  # the first learned model with a checkpoint
    assert report["errors"] == 0 and report["ok"] == report["requests"] == 8, report["error_messages"]
    q = report["queue"]
    assert q["executions_logged"] == 9  # every request (and the warm-up) reached the handler
    assert q["max_concurrent"] == 1 and q["overlapping_pairs"] == 0
    assert q["max_rank_seen"] is None or 0 <= q["max_rank_seen"] <= 3
    lat = report["latency_s"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["max"] and report["throughput_rps"] > 0
    assert report["server_run_s"]["p50"] > 0
    assert report["memory"]["peak_rss_mib"] is None or report["memory"]["peak_rss_mib"] > 50
    assert not loadtest.failed(report)
    text = loadtest.table(report) + loadtest.markdown(report, "a note")
    assert "PASSED" in text and "a note" in text


def test_check_result(tmp_path):
    masked, observed = loadtest._expected(SAMPLE, seed=3, density=0.2)
    assert observed == 205 and masked.shape == (32, 32, 3)
    good, same, small = tmp_path / "good.png", tmp_path / "same.png", tmp_path / "small.png"
    Image.fromarray(np.asarray(Image.open(SAMPLE).convert("RGB"))).save(good)
    Image.fromarray(masked).save(same)
    Image.fromarray(masked[:16, :16]).save(small)
    info = {"psnr": 21.5, "observed": 205, "size": 32}
    assert loadtest.check_result(good, info, masked, observed) == []
    assert "masked input" in loadtest.check_result(same, info, masked, observed)[0]
    assert "expected RGB" in loadtest.check_result(small, info, masked, observed)[0]
    assert "PSNR" in loadtest.check_result(good, {**info, "psnr": "nan"}, masked, observed)[0]
    assert "observed" in loadtest.check_result(good, {**info, "observed": 7}, masked, observed)[0]
    assert "no image" in loadtest.check_result(tmp_path / "missing.png", info, masked, observed)[0]


def test_overlaps():
    back_to_back = [{"start": 0.0, "end": 1.0}, {"start": 1.0, "end": 2.0}, {"start": 2.5, "end": 3.0}]
    assert loadtest._overlaps(back_to_back) == (0, 1)  # touching is not overlapping
    assert loadtest._overlaps([{"start": 0.0, "end": 2.0}, {"start": 1.0, "end": 3.0},
                               {"start": 1.5, "end": 1.8}]) == (2, 3)


@pytest.mark.slow
def test_identical_and_different_requests_at_once_all_come_back_whole_and_right(tmp_path):
    # 8 clients send one identical request and 8 send different ones, all at once (issue: identical
    # numpy outputs once shared one cached file that concurrent calls rewrote: empty or cut images)
    report = loadtest.run_mixed(identical=8, different=8, requests=2, arch="tps",
                                pretrained=str(tiny_checkpoints(tmp_path)))
    assert report["requests"] == 32 and report["compared"] == 32, report["error_messages"]
    assert report["failures"] == 0 and report["mismatches"] == 0, report["error_messages"]
    assert report["by_group"]["identical"]["distinct_files"] == 16  # one file per answer, never shared
    assert report["max_abs_diff"] == 0 and not loadtest.failed(report)
    assert "PASSED" in loadtest.markdown(report)


def test_a_wrong_or_cut_answer_is_caught(tmp_path):
    masked, observed = loadtest._expected(SAMPLE, seed=0, density=0.2)
    info = {"psnr": 21.5, "observed": observed, "size": 32}
    good = tmp_path / "good.png"
    Image.open(SAMPLE).convert("RGB").save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert "does not decode" in loadtest.check_result(cut, info, masked, observed)[0]
    assert "empty image file" in loadtest.check_result(empty, info, masked, observed)[0]
