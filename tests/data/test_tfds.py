"""The tfds path on datasets built here (array_record, no TensorFlow, no download)."""
import sys

import numpy as np
import pytest

import tensorflow_datasets as tfds

from outeffhop_jax import data  # noqa: E402


class TinyText(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")
  # Test modules imported by path have no package: skip tfds' lookup of a checksums file beside it.
  code_path = None

  def _info(self):
    return tfds.core.DatasetInfo(builder=self,
                                 features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(40, 0), "validation": self._generate_examples(6, 1)}

  def _generate_examples(self, n, offset):
    for i in range(n):
      yield i, {"text": f"line {i + 1000 * offset}: the quick brown fox. " * 3}


class TinyImages(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")
  code_path = None

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(12, 12, 3)),
        "label": tfds.features.ClassLabel(num_classes=3)}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(30)}

  def _generate_examples(self, n):
    from PIL import Image  # PIL images are encoded without TensorFlow

    rng = np.random.RandomState(0)
    for i in range(n):
      yield i, {"image": Image.fromarray(rng.randint(0, 255, (12, 12, 3), dtype=np.uint8)),
                "label": i % 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("tfds"))
  for builder in (TinyText, TinyImages):
    builder(data_dir=d, file_format="array_record").download_and_prepare()
  return d


def test_tfds_text_pipeline(data_dir):
  source = data.text_source("tfds:tiny_text", "train", data_dir=data_dir)
  assert len(source) == 40
  tok = data.ByteTokenizer()
  it = iter(data.text_dataset(source, tok, seq_len=32, batch_size=4, train=True))
  batch = next(it)
  it.close()
  assert batch["tokens"].shape == (4, 33)
  assert "quick brown fox" in tok.decode(np.concatenate(
      [row[1:] for row in batch["tokens"]]))
  assert "tensorflow" not in sys.modules


def test_tfds_image_pipeline(data_dir):
  source = data.image_source("tfds:tiny_images", "train", data_dir=data_dir)
  it = iter(data.image_dataset(source, image_size=8, num_channels=3, batch_size=5, train=True,
                               augment="crop_flip"))
  batch = next(it)
  it.close()
  assert batch["images"].shape == (5, 8, 8, 3) and batch["images"].dtype == np.float32
  assert set(batch["labels"].tolist()) <= {0, 1, 2}


def test_unknown_dataset_names_the_field():
  with pytest.raises(ValueError, match="config.data.dataset"):
    data.text_source("wikitext", "train")
