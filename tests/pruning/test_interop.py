import torch
import torch_pruning as tp

from ttmpd.lut import LatencyPredictor, profile_model
from ttmpd.models import create_model
from ttmpd.profiler import GridConfig, get_backend
from ttmpd.pruning import LatencyAwareImportance, latency_costs


def test_latency_costs_and_torch_pruning_importance(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    x = torch.randn(1, 3, 32, 32)
    table = profile_model(model, x, get_backend("fake"), tmp_path / "lut.parquet",
                          grid=GridConfig(channel_step=8), progress=False).table  # fmt: skip
    predictor = LatencyPredictor().fit(table)
    costs = latency_costs(predictor, model, x, step=8)
    assert {"group", "channels", "ms_per_channel"} == set(costs.columns)
    assert len(costs) >= 3 and (costs["ms_per_channel"] > 0).all()
    base = tp.importance.MagnitudeImportance(p=2)
    imp = LatencyAwareImportance(base, predictor, model, x)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    group_full = graph.get_pruning_group(
        model.conv1, tp.prune_conv_out_channels, idxs=list(range(model.conv1.out_channels))
    )
    scaled, plain = imp(group_full), base(group_full)
    assert scaled.shape == plain.shape and not torch.allclose(scaled, plain)
    assert torch.allclose(scaled / plain, (scaled / plain)[0].expand_as(plain))  # one factor
    pruner = tp.pruner.MetaPruner(model, x, importance=imp, pruning_ratio=0.5, round_to=8,
                                  ignored_layers=[model.fc])  # fmt: skip
    pruner.step()
    with torch.no_grad():
        assert model(x).shape == (1, 10)
    assert model.layer2[0].conv1.out_channels < 32
