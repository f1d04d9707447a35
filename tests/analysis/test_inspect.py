"""`inspect` on a saved Hugging Face checkpoint with a planted massive activation; bad folders."""
import json
import os

import pytest

from outeffhop_jax.analysis import __main__ as cli
from outeffhop_jax.analysis.experiments.inspect import checkpoint

DIM, BOS, SCALE = 5, 2, 300.0


@pytest.fixture(scope="module")
def planted_opt(tmp_path_factory):
  """A tiny OPTForCausalLM whose BOS embedding carries SCALE in hidden dimension DIM: in a pre-LN
  decoder it rides the residual stream, a massive activation on the first token of every row."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  torch.manual_seed(0)
  cfg = transformers.OPTConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, ffn_dim=64,
                               num_attention_heads=4, max_position_embeddings=64,
                               word_embed_proj_dim=32, bos_token_id=BOS, eos_token_id=BOS,
                               pad_token_id=1)
  model = transformers.OPTForCausalLM(cfg).eval()
  with torch.no_grad():
    model.model.decoder.embed_tokens.weight[BOS, DIM] = SCALE
  path = tmp_path_factory.mktemp("opt") / "planted"
  model.save_pretrained(path, safe_serialization=True)
  return path, model


def test_inspect_names_the_planted_dimension_and_its_carrier(planted_opt, tmp_path):
  import torch

  path, hf_model = planted_opt
  out = tmp_path / "report"
  lines = []
  argv = ["inspect", str(path), "--out", str(out), "--seq_len", "32", "--num_rows", "16",
          "--batch_size", "8", "--calib_batches", "1", "--calib_subsets", "2",
          "--settings", "W8A8,W4A8"]
  assert cli.main(argv, log=lines.append) == 0
  r = json.loads((out / "report.json").read_text())
  md = (out / "report.md").read_text()
  assert r["architecture"] == "OPTForCausalLM" and r["output"] == "logits"
  top = r["carriers"][0]
  assert top["dim"] == DIM and r["outliers"]["top_dims"][0]["dim"] == DIM
  assert top["tokens"][0]["id"] == BOS and top["positions"][0]["position"] == 0
  assert top["massive_count"] == 16  # the first token of each of the 16 rows, nothing else
  # Independent reference: the transformers model's hidden states. Attention is causal, so the
  # first position sees only itself: its states are the same in every row that starts with BOS.
  ids = [BOS] + [10] * 31
  with torch.no_grad():
    hs = hf_model(torch.tensor([ids]), output_hidden_states=True).hidden_states
  ref = max(float(h[0, 0, DIM].abs()) for h in hs[1:-1])  # layer outputs (last: after final LN)
  assert abs(top["max_abs"] - ref) < 0.05 * ref
  assert f"| {DIM} |" in md and f"`<start id {BOS}>` (16)" in md
  q = r["quantized"]
  assert set(q) == {"W8A8", "W4A8"} and len(q["W8A8"]["values"]) == 2
  assert 0 < q["W4A8"]["mean"] <= 1.0 and abs(r["fp32_fidelity"] - 1) < 1e-6
  abl = r["ablation"]["rows"]
  assert {"none", "all", "ffn_output", "residual"} <= set(abl)
  assert abl["none"]["quantizers"] == 0
  assert abl["all"]["quantizers"] > abl["ffn_output"]["quantizers"] > 0
  assert sum(len(v) for v in r["sink_heads"].values()) <= 8 and r["weights"]
  for p in ("report_per_layer.png", "report_dim_max.png", "report_fidelity.png",
            "report_ablation.png", "report_attention.png"):
    assert os.path.getsize(out / p) > 0, p


def test_bad_folders_name_what_is_missing(planted_opt, tmp_path):
  path, _ = planted_opt
  run = lambda p: cli.main(["inspect", str(p), "--out", str(tmp_path / "o")],  # noqa: E731
                           log=lambda _: None)
  with pytest.raises(SystemExit, match="is not a folder"):
    run(tmp_path / "nowhere")
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(SystemExit, match="no config.json"):
    run(empty)
  no_weights = tmp_path / "no_weights"
  no_weights.mkdir()
  (no_weights / "config.json").write_text((path / "config.json").read_text())
  with pytest.raises(SystemExit, match=r"no \*\.safetensors"):
    run(no_weights)
  gpt2 = tmp_path / "gpt2"
  gpt2.mkdir()
  (gpt2 / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
  with pytest.raises(SystemExit, match="unknown architecture 'GPT2LMHeadModel'.*BertModel"):
    run(gpt2)
  workdir = tmp_path / "workdir"
  (workdir / "checkpoints").mkdir(parents=True)
  (workdir / "config.json").write_text(json.dumps({"model": {}, "train": {}}))
  with pytest.raises(SystemExit, match="empty workdir"):
    run(workdir)
  assert not (tmp_path / "o").exists()
  with pytest.raises(FileNotFoundError, match="empty workdir"):  # the library's own error type
    checkpoint.check_folder(str(workdir))
