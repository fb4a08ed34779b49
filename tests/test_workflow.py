"""Shared glue of the chained commands: a table whose rows drifted apart is called out."""

import logging

import torch
from nets import ResidualNet

from ttmpd.lut import LatencyTable, profile_model
from ttmpd.profiler import GridConfig, get_backend
from ttmpd.workflow import load_predictor_for


def _table(tmp_path):
    lut = tmp_path / "lut.parquet"
    net, x = ResidualNet(c=16).eval(), torch.randn(1, 3, 16, 16)
    profile_model(net, x, get_backend("fake"), lut, grid=GridConfig(channel_step=4),
                  progress=False)  # fmt: skip
    return lut, net, x


def test_calibrating_on_a_table_with_rows_drifted_apart_warns(tmp_path, caplog):
    lut, net, x = _table(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ttmpd.workflow"):
        load_predictor_for(str(lut), None, net, x, calibrate_variants=2)
    assert not caplog.records  # the fake device still measures what the table says
    table = LatencyTable.load(lut)
    frame = table.frame.copy()
    frame.loc[frame.index[::2], "latency_ms"] *= 1.5  # half the rows from a slower hour
    LatencyTable(frame, table.meta).save(lut)
    with caplog.at_level(logging.WARNING, logger="ttmpd.workflow"):
        load_predictor_for(str(lut), None, net, x, calibrate_variants=2)
    assert "re-profile" in caplog.text and "moved by different factors" in caplog.text


def test_a_stream_without_labels_gives_a_scenario_without_accuracy(tmp_path):
    import numpy as np
    import pytest

    from ttmpd.base import reference_checkpoint_path
    from ttmpd.errors import InputError
    from ttmpd.workflow import load_scenario

    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28, 1), dtype=np.uint8)
    np.savez(tmp_path / "stream.npz", images=images)
    scenario = load_scenario(str(reference_checkpoint_path()), str(tmp_path / "stream.npz"), 16)
    assert scenario.images.shape == (16, 1, 28, 28) and scenario.held_out_labels is None
    assert len(scenario.held_out_images) == 24
    with pytest.raises(InputError, match="no labels"):
        scenario.evaluate(scenario.checkpoint.model)
