"""STanHop-Net: shapes per stage, segment merging, errors, Plug-and-Play, Tune-and-Play, capture."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from outeffhop_jax import models
from outeffhop_jax.models import stanhop
from outeffhop_jax.train import config_lib, forecasting

# Softmax keeps these structural tests fast; the learnable entmax is tested in tests/nn/test_gsh.py
# and in the variants / capture tests below.
SMALL = dict(d_model=16, num_heads=2, d_ff=32, num_routers=3, normalizer="softmax",
             learn_alpha=False)


def _model(**kw):
  cfg = models.STanHopConfig.from_preset("tiny", **{**SMALL, **kw})
  return models.STanHopNet(cfg, rngs=nnx.Rngs(0)), cfg


@pytest.mark.parametrize("in_len,seg_len,n_series,num_layers,out_len", [
    (24, 6, 3, 2, 12), (30, 5, 1, 3, 7), (16, 4, 4, 1, 4)])
def test_shapes_through_every_stage(in_len, seg_len, n_series, num_layers, out_len):
  model, cfg = _model(in_len=in_len, seg_len=seg_len, n_series=n_series, num_layers=num_layers,
                      out_len=out_len)
  x = jax.ShapeDtypeStruct((2, in_len, n_series), jnp.float32)
  shape = lambda f, *a: nnx.eval_shape(f, model, *a).shape  # traced only: no compile
  enc = nnx.eval_shape(lambda m, x: m.encode(x), model, x)
  S = in_len // seg_len
  assert [e.shape for e in enc] == [(2, n_series, s, 16) for s in cfg.segments_per_scale()]
  assert cfg.segments_per_scale()[:2] == [S, S]
  assert shape(lambda m, e: m.encoder[0].block(e), enc[0]) == enc[0].shape
  dec = jax.ShapeDtypeStruct((2, n_series, cfg.out_segments, 16), jnp.float32)
  assert shape(lambda m, d, e: m.decoder[0](d, e, True)[1], dec, enc[0]) == (
      2, n_series, cfg.out_segments, seg_len)
  y = nnx.eval_shape(lambda m, x: m(x), model, x)
  assert y.shape == (2, out_len, n_series) and y.dtype == jnp.float32
  assert len(model.decoder) == num_layers + 1


def test_segment_merge_pads_with_the_last_segments():
  cfg = models.STanHopConfig.from_preset("tiny", **SMALL)
  merge = stanhop.SegmentMerge(cfg, rngs=nnx.Rngs(0))
  z = jax.random.normal(jax.random.key(1), (2, 3, 5, 16))
  out = nnx.jit(lambda m, z: m(z))(merge, z)
  assert out.shape == (2, 3, 3, 16)
  # Group 2 is (segment 4, segment 4): the odd segment is repeated, as Crossformer pads.
  want = merge.proj(merge.norm(jnp.concatenate([z[:, :, 4], z[:, :, 4]], -1)))
  np.testing.assert_allclose(out[:, :, 2], want, atol=1e-5)
  want0 = merge.proj(merge.norm(jnp.concatenate([z[:, :, 0], z[:, :, 1]], -1)))
  np.testing.assert_allclose(out[:, :, 0], want0, atol=1e-5)


def test_clear_errors():
  with pytest.raises(ValueError, match=r"in_len \(50\) must be a multiple of seg_len \(6\)"):
    models.STanHopConfig.from_preset("tiny", in_len=50)
  model, _ = _model(n_series=3)
  with pytest.raises(ValueError, match="built for 3 series of 48 steps"):
    model(jnp.zeros((2, 48, 5)))
  with pytest.raises(ValueError, match="sinks are not supported"):
    models.STanHopConfig.from_preset("tiny", sinks="learned", normalizer="softmax",
                                     learn_alpha=False)
  with pytest.raises(ValueError, match="learn_alpha=True needs"):
    models.STanHopConfig.from_preset("tiny", normalizer="softmax1")
  with pytest.raises(ValueError, match="memory_KLC must have shape"):
    model(jnp.zeros((2, 48, 3)), memory_KLC=jnp.zeros((4, 24, 3)))


def test_plug_and_play_changes_predictions_only_through_retrieval():
  model, cfg = _model(n_series=2, in_len=12, out_len=6, num_layers=1)
  x = jax.random.normal(jax.random.key(2), (3, 12, 2))
  bank = jax.random.normal(jax.random.key(3), (6, 12, 2))
  before = jax.tree.map(np.array, nnx.state(model, nnx.Param))
  beta = 1.0 / np.sqrt(cfg.in_len)

  @nnx.jit
  def run(m, x, bank):  # one compile for the three forecasts
    x_mem = stanhop.plug_and_play(x, bank, beta=beta, normalizer=cfg.memory_normalizer,
                                  weight=cfg.plug_weight)
    return m(x), m(x, memory_KLC=bank), m(x_mem)

  y0, y1, y_mem = run(model, x, bank)
  jax.tree.map(np.testing.assert_array_equal, before,
               jax.tree.map(np.array, nnx.state(model, nnx.Param)))
  assert not np.allclose(y0, y1)
  # The memory enters through the retrieved input only: the same model on the blended input.
  np.testing.assert_allclose(y1, y_mem, atol=1e-5)
  # A bank that holds the query (large beta, sparsemax) retrieves it exactly: x is unchanged.
  own = stanhop.plug_and_play(x[:1], jnp.concatenate([x[:1], bank]), beta=10.0)
  np.testing.assert_allclose(own, x[:1], atol=1e-5)


def test_tune_and_play_memory_is_learned_patterns():
  model, cfg = _model(n_series=2, in_len=24, num_layers=1, tune_memories=5)
  assert model.tune_memory.stored.shape == (5, 16)
  assert nnx.eval_shape(lambda m, x: m(x), model, jnp.ones((2, 24, 2))).shape == (2, 12, 2)
  assert isinstance(model.tune_memory.hopfield, stanhop.GSH)


def test_capture_outlier_modules_and_alphas():
  model, cfg = _model(n_series=2, in_len=12, out_len=6, num_layers=2, normalizer="entmax:1.5",
                      learn_alpha=True)
  x = jax.random.normal(jax.random.key(4), (2, 12, 2))
  run = nnx.jit(lambda m, x: models.capture(m, lambda m: m(x), attention_probs=True)[1])
  acts = run(model, x)
  leaves = {k.rsplit(".", 1)[-1] for k in acts}
  assert set(stanhop.OUTLIER_MODULES) <= leaves and "attn_probs" in leaves
  assert acts["encoder.1.block.block_output"].shape == (2, 2, 1, 16)
  assert acts["encoder.0.block.series.series_fc2"].shape[0] == 2
  assert len(stanhop.alphas(model)) == 3 * 2 + 4 * 3  # time, routers, series (+ cross)
  assert models.OUTLIER_MODULES["stanhop"] == stanhop.OUTLIER_MODULES


@pytest.mark.parametrize("variant", config_lib.VARIANTS + tuple(forecasting.EXTRA_VARIANTS))
def test_every_variant_builds_and_runs(variant):
  base, overrides = forecasting.variant_overrides(variant)
  assert base in config_lib.VARIANTS
  model, cfg = _model(n_series=2, in_len=12, out_len=6, num_layers=1, **overrides)
  y = nnx.eval_shape(lambda m, x: m(x), model, jnp.ones((1, 12, 2)))  # traced, not compiled
  assert y.shape == (1, 6, 2)
  if variant.startswith("gated"):
    assert model.encoder[0].block.time.hopfield.gate is not None
