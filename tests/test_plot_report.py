"""ResumablePlotReport writes its PNG atomically: a kill inside savefig leaves the previous plot whole."""
import matplotlib
import matplotlib.figure
import pytest

matplotlib.use("Agg")

from chainer_va.extensions import ResumablePlotReport  # noqa: E402

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
