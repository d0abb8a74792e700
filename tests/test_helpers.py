"""Device parsing, seeding, downloads and run records."""
import json
import os
import random

import numpy
import pytest

from chainer_va import device
from va_core import download, runinfo, seeding


@pytest.mark.parametrize("spec,expected", [
    (-1, "@numpy"), ("-1", "@numpy"), ("@numpy", "@numpy"), ("cpu", "@numpy"),
    (0, "@cupy:0"), ("1", "@cupy:1"), ("@cupy:2", "@cupy:2"),
])
def test_parse_device_spec(spec, expected):
    assert device.parse_device_spec(spec) == expected


def test_bad_device_spec():
    with pytest.raises(ValueError, match="unknown device"):
        device.parse_device_spec("tpu")


def test_cpu_device_and_gpu_without_cupy():
    assert device.get_device(-1).xp is numpy
    from chainer.backends import cuda

    if not cuda.available:
        with pytest.raises(RuntimeError, match=r"pip install -e \.\[gpu\]"):
            device.get_device(0)


def test_seed_everything_reproduces_python_and_numpy():
    seeding.seed_everything(123)
    a = (random.random(), numpy.random.rand())
    seeding.seed_everything(123)
    assert (random.random(), numpy.random.rand()) == a
    with pytest.raises(ValueError, match="non-negative"):
        seeding.seed_everything(-1)


def test_seed_everything_tensorflow():
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    seeding.seed_everything(7, tensorflow=True)
    a = tf.random.normal([3]).numpy()
    seeding.seed_everything(7, tensorflow=True)
    numpy.testing.assert_array_equal(tf.random.normal([3]).numpy(), a)


def test_fetch_verifies_checksum_and_reports_offline(tmp_path):
    payload = tmp_path / "src.bin"
    payload.write_bytes(b"hello")
    good = download.sha256_of(payload)
    url = payload.as_uri()
    got = download.fetch(url, "a.bin", good, directory=tmp_path / "cache")
    assert got.read_bytes() == b"hello"
    with pytest.raises(download.DownloadError, match="corrupted"):
        download.fetch(url, "b.bin", "0" * 64, directory=tmp_path / "cache")
    assert not (tmp_path / "cache" / "b.bin").exists()  # a bad download never lands
    got.write_bytes(b"tampered")
    with pytest.raises(download.DownloadError, match="Delete it and download it again"):
        download.fetch(url, "a.bin", good, directory=tmp_path / "cache")
    with pytest.raises(download.DownloadError, match="place it at"):
        download.fetch("http://127.0.0.1:9/x.tgz", "x.tgz", None, directory=tmp_path / "cache")


def test_fetch_tries_mirrors_in_order_and_checks_size_and_md5(tmp_path):
    import hashlib

    payload = tmp_path / "src.bin"
    payload.write_bytes(b"hello world")
    md5 = hashlib.md5(b"hello world").hexdigest()
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(b"hello worle")                      # same size, different bytes
    got = download.fetch(["http://127.0.0.1:9/a.bin", wrong.as_uri(), payload.as_uri()], "a.bin", None,
                         directory=tmp_path / "cache", size=11, md5=md5)
    assert got.read_bytes() == b"hello world"
    with pytest.raises(download.DownloadError, match=r"11 bytes, expected 12"):
        download.verify(got, None, size=12)
    with pytest.raises(download.DownloadError) as info:
        download.fetch([wrong.as_uri()], "b.bin", None, directory=tmp_path / "cache", md5=md5)
    assert "md5 " + hashlib.md5(b"hello worle").hexdigest() in str(info.value)
    assert not (tmp_path / "cache" / "b.bin").exists()


def test_fetch_rejects_a_truncated_download_moves_to_the_next_mirror_and_shares_the_file(tmp_path):
    """A server that announces 100,000 bytes and sends 1,000: without a checksum the short file used to
    be kept. Also: a failed attempt leaks no file descriptor; the cached file is readable by the group
    and others as the umask allows (mkstemp makes files owner-only)."""
    import functools
    import http.server
    import os
    import threading

    class Truncating(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.close_connection = True

        def log_message(self, *args):
            pass

    served = tmp_path / "served"
    served.mkdir()
    (served / "good.bin").write_bytes(b"y" * 1000)
    good_handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    good_handler.log_message = lambda *args: None
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), h) for h in (Truncating, good_handler)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    bad_url, good_root = ("http://127.0.0.1:{}/".format(server.server_address[1]) for server in servers)
    try:
        with pytest.raises(download.DownloadError, match="stopped after 1000 of 100000 bytes"):
            download.fetch(bad_url + "f.bin", "f.bin", None, directory=tmp_path / "cache")
        assert not (tmp_path / "cache" / "f.bin").exists()
        got = download.fetch([bad_url + "f.bin", good_root + "good.bin"], "f.bin", None,
                             directory=tmp_path / "cache")
        assert got.read_bytes() == b"y" * 1000
    finally:
        for server in servers:
            server.shutdown()
    mask = os.umask(0)
    os.umask(mask)
    assert got.stat().st_mode & 0o777 == 0o666 & ~mask
    assert runinfo.atomic_write_bytes(tmp_path / "r.bin", b"1").stat().st_mode & 0o777 == 0o666 & ~mask
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(download.DownloadError):
            download.fetch("http://127.0.0.1:9/x", "x", None, directory=tmp_path / "cache")
    assert len(os.listdir("/proc/self/fd")) == fds


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(download.DATA_ENV, str(tmp_path))
    assert download.cache_dir() == tmp_path
    assert download.cache_dir(tmp_path / "x") == tmp_path / "x"


def test_run_config_record_and_atomic_write(tmp_path):
    path = runinfo.write_run_config(tmp_path, {"objective": "jsd", "seed": 5})
    record = json.loads(path.read_text())
    assert record["seed"] == 5 and record["config"]["objective"] == "jsd"
    assert "numpy" in record["environment"]
    runinfo.atomic_write_text(tmp_path / "f.txt", "one")
    runinfo.atomic_write_text(tmp_path / "f.txt", "two")
    assert (tmp_path / "f.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "f.txt"]  # no temp files left


def test_run_lock_refuses_a_second_holder_and_removes_a_folder_left_empty(tmp_path):
    from va_core import runinfo

    out = tmp_path / "new" / "run"
    with runinfo.exclusive_run_lock(out):
        assert (out / runinfo.LOCK_FILENAME).read_text() == str(os.getpid())
        with pytest.raises(runinfo.RunLockedError, match="in use by another running job \\(pid {}\\)".format(
                os.getpid())):
            with runinfo.exclusive_run_lock(out):
                pass
    assert not out.exists()  # the job wrote nothing: no empty folder is left behind
    with runinfo.exclusive_run_lock(out):
        (out / "result.json").write_text("{}")
    assert (out / "result.json").is_file()
    with runinfo.exclusive_run_lock(out):  # released: the next job takes it
        pass


def test_one_settings_difference_finder_and_one_line_errors():
    recorded = {"steps": 600, "hidden": [64, 64], "lr": 1e-3, "threads": 1, "old_key": 3}
    wanted = {"steps": 700, "hidden": (64, 64), "lr": 1e-3, "threads": 4, "new_key": "x"}
    assert runinfo.settings_differences(recorded, wanted, may_change=("threads",)) == {
        "new_key": ("(absent)", "x"), "old_key": (3, "(absent)"), "steps": (600, 700)}  # a tuple reads back as a list
    assert runinfo.settings_differences(recorded, wanted, keys=wanted.keys(), absent=None) == {
        "new_key": (None, "x"), "steps": (600, 700), "threads": (1, 4)}
    assert runinfo.settings_differences(recorded, dict(recorded)) == {}
    problem = runinfo.resume_problem(recorded, wanted, ("threads",), "runs/x", keys=["steps", "threads", "lr"])
    assert problem.startswith("cannot resume runs/x: these settings differ from its record runs/x/config.json "
                              "(recorded -> now): steps: 600 -> 700; ") and "only threads may change" in problem
    assert runinfo.resume_problem(recorded, wanted, ("threads", "steps"), "runs/x", keys=["steps", "threads"]) is None
    assert runinfo.one_line(ValueError("bad\n  value\tthere")) == "ValueError: bad value there"
    long = runinfo.one_line(OSError("x" * 400), limit=20)
    assert long == "OSError: xxxxxxxxxxx..." and "\n" not in long


def test_every_commands_errors_share_one_exit_status_convention(capsys):
    """Settings, data or a folder a command cannot use: 2; a run that failed: 1 (va_core.errors)."""
    from chainer_va import data, snapshots, train
    from rl import train as rl_train
    from tfp_flows import ugan
    from va_core import checkpoints, errors

    usage = [train.ConfigError, train.UntemperedScheduleError, data.DataError, download.DownloadError,
             runinfo.RunLockedError, ugan.SettingsError, ugan.RunExistsError, ugan.ResumeMismatchError,
             rl_train.UsageError]
    failed = [train.TrainingError, snapshots.SnapshotError, ugan.DamagedFileError, ugan.DivergedError,
              checkpoints.CheckpointError]
    assert all(issubclass(cls, errors.UsageError) and cls.exit_status == 2 for cls in usage)
    assert all(issubclass(cls, errors.RunFailedError) and cls.exit_status == 1 for cls in failed)
    assert errors.report(train.ConfigError("--lr must be positive")) == 2
    assert errors.report(ugan.DivergedError("diverged by step 4"), prog="figS1") == 1
    assert capsys.readouterr().err == "error: --lr must be positive\nfigS1: error: diverged by step 4\n"
    with pytest.raises(SystemExit) as stop:
        errors.exit_with(errors.UsageError("--seeds 0"), prog="table1")
    assert stop.value.code == 2 and capsys.readouterr().err == "table1: error: --seeds 0\n"
