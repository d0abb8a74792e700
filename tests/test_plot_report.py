"""ResumablePlotReport writes its PNG atomically: a kill inside savefig leaves the previous plot whole.
Progress for a log file: plain lines, throttled, without cursor sequences."""
import io
import types

import matplotlib
import matplotlib.figure
import pytest

matplotlib.use("Agg")

from chainer_va.extensions import LineProgress, PlainText, ResumablePlotReport  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Updater:
    epoch = 0
    iteration = 1


class _Trainer:
    def __init__(self, out, loss):
        self.out, self.observation, self.is_before_training, self.updater = str(out), {"loss": loss}, False, _Updater()


def test_plot_is_replaced_in_one_rename_and_survives_a_failed_save(tmp_path, monkeypatch):
    report = ResumablePlotReport(["loss"], "iteration", trigger=lambda trainer: True, filename="loss.png")
    report(_Trainer(tmp_path, 1.0))
    first = (tmp_path / "loss.png").read_bytes()
    assert first.startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]
    assert report._file_name == "loss.png"  # the snapshot key (_plot_loss.png) is unchanged

    def torn_save(self, fname, *args, **kwargs):  # a kill half way through writing the file
        with open(fname, "wb") as f:
            f.write(PNG_SIGNATURE[:4])
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", torn_save)
    with pytest.raises(KeyboardInterrupt):
        report(_Trainer(tmp_path, 2.0))
    assert (tmp_path / "loss.png").read_bytes() == first
    assert report._file_name == "loss.png"
    monkeypatch.undo()
    report(_Trainer(tmp_path, 3.0))  # the next plot replaces the stale partial file too
    assert (tmp_path / "loss.png").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]


def test_plain_text_drops_cursor_and_erase_sequences():
    out = io.StringIO()
    stream = PlainText(out)
    for chunk in ("\033[J", "iteration  loss\n", "\033[3A", "\033[1;2H10  0.5\n"):
        stream.write(chunk)
    assert out.getvalue() == "iteration  loss\n10  0.5\n"


def test_line_progress_prints_at_most_every_min_seconds_and_at_the_end():
    clock = {"now": 100.0}
    out = io.StringIO()
    progress = LineProgress(total=100, interval=10, min_seconds=30.0, out=out, clock=lambda: clock["now"])
    trainer = types.SimpleNamespace(updater=types.SimpleNamespace(iteration=0))
    for iteration in range(51, 101):  # a run resumed at iteration 50, one iteration per second
        trainer.updater.iteration = iteration
        clock["now"] += 1.0
        progress(trainer)
    lines = out.getvalue().splitlines()
    # the first multiple of 10, then multiples of 10 once 30 s have passed since the last line, and the last
    assert lines == ["iteration 60/100 (60.0%), 1 it/s, about 0:00:40 left",
                     "iteration 90/100 (90.0%), 1 it/s, about 0:00:10 left",
                     "iteration 100/100 (100.0%), 1 it/s, about 0:00:00 left"]


def test_observed_keys_with_the_prefix_are_plotted_too_and_kept_across_a_resume(tmp_path):
    report = ResumablePlotReport(["loss"], "iteration", trigger=lambda trainer: True, filename="loss.png",
                                 key_prefix="loss_")
    trainer = _Trainer(tmp_path, 1.0)
    trainer.observation.update(loss_r1=0.5, other=3.0)
    report(trainer)
    assert report._y_keys == ["loss", "loss_r1"] and report._data["loss_r1"] == [(1, 0.5)]
    assert "other" not in report._data
    restored = ResumablePlotReport(["loss"], "iteration", trigger=lambda trainer: True, filename="loss.png",
                                   key_prefix="loss_")
    restored._data = {k: list(v) for k, v in report._data.items()}  # as a snapshot restores it
    trainer.updater.iteration = 2
    restored(trainer)
    assert restored._data["loss_r1"] == [(1, 0.5), (2, 0.5)]
