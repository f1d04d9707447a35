"""Module collection over real tiny models: the collected names are OUTLIER_MODULES for every layer,
and the aggregation equals the metrics computed directly on the captured outputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from outeffhop_jax import analysis as A
from outeffhop_jax import models
from outeffhop_jax.analysis.outliers import collect
from outeffhop_jax.nn import capture

L = 3  # layers


def _model(family):
  kw = dict(d_model=32, num_layers=L, num_heads=4, d_ff=64)
  if family == "opt":
    m = models.OPT(models.OPTConfig.from_preset("tiny", vocab_size=64, max_len=16, **kw),
                   rngs=nnx.Rngs(0))
    x = jax.random.randint(jax.random.key(1), (4, 16), 0, 64)
  elif family == "bert":
    m = models.BERT(models.BERTConfig.from_preset("tiny", vocab_size=64, max_len=16, **kw),
                    rngs=nnx.Rngs(0))
    x = jax.random.randint(jax.random.key(1), (4, 16), 0, 64)
  else:
    m = models.ViT(models.ViTConfig.from_preset("tiny", image_size=8, patch_size=4, num_channels=1,
                                                **kw), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  return m, x


EXPECTED = {
    "opt": [f"layers.{i}.{n}" for i in range(L) for n in models.opt.OUTLIER_MODULES]
           + ["final_layer_norm"],
    "bert": [f"bert.layers.{i}.{n}" for i in range(L) for n in models.bert.OUTLIER_MODULES],
    "vit": [f"layers.{i}.{n}" for i in range(L) for n in models.vit.OUTLIER_MODULES
            if n != "layernorm"] + ["layernorm"],
}


@pytest.mark.parametrize("family", ["opt", "bert", "vit"])
def test_collected_modules_are_outlier_modules_of_every_layer(family):
  m, x = _model(family)
  r = collect.collect(m, family, [(x, np.ones(4))])
  assert sorted(r["module_set"]) == sorted(EXPECTED[family])
  assert r["per_layer"]["layer"] == list(range(L))
  assert r["summary"]["num_modules"] == len(EXPECTED[family])
  assert len(r["sink_first_token"]) == L and all(len(v) == 4 for v in r["sink_first_token"].values())
  assert len(r["maps"]) == L


def test_aggregation_matches_direct_metrics_and_ignores_padding_rows():
  m, x = _model("opt")
  r = collect.collect(m, "opt", [(x[:2], np.ones(2)), (x, np.array([0.0, 0.0, 1.0, 1.0]))])
  _, acts = capture(m, lambda mm: mm(x))
  per_module = {}
  for n in EXPECTED["opt"]:
    rows = A.as_rows(acts[n])
    per_module[n] = {"kurtosis": float(jnp.mean(A.kurtosis(rows))),
                     "inf_norm": float(jnp.mean(A.inf_norm(rows)))}
  want = A.aggregate(per_module)
  np.testing.assert_allclose(r["summary"]["avg_kurtosis"], want["avg_kurtosis"], rtol=1e-4)
  np.testing.assert_allclose(r["summary"]["max_inf_norm"], want["max_inf_norm"], rtol=1e-5)
  dim_max = np.max([np.abs(np.asarray(acts[n])).reshape(-1, 32).max(0) for n in EXPECTED["opt"]], 0)
  np.testing.assert_allclose(r["dim_max"], dim_max, rtol=1e-6)
  assert r["top_dims"][0]["dim"] == int(np.argmax(dim_max))
