"""grain pipelines: packed token sequences for language models, preprocessed images for ViT.

Determinism and resume: every pipeline is a function of (source, seed, process index/count). Train
pipelines reshuffle per epoch (grain's shuffle under repeat) and are grain `IterDataset`s whose
iterators have a JSON state (`get_state`/`set_state`) that the checkpoint stores beside the model,
so a resumed run reads exactly the batches it would have read. Each host reads its own slice of the
records (`[process_index::process_count]`) and yields its local share of the global batch.

Every batch carries `example_mask` [b] (1 = real example, 0 = padding) so evaluation can pad its
last batches and still average exactly.
"""
from __future__ import annotations

import itertools
from typing import Any, Iterator

import grain
import grain.experimental as grain_exp
import numpy as np

from outeffhop_jax.data.sources import ArraySource

Batch = dict[str, np.ndarray]


def _shard_shuffle_repeat(ds: grain.MapDataset, *, train: bool, seed: int, process_index: int,
                          process_count: int) -> grain.MapDataset:
  ds = ds[process_index::process_count]
  if train:
    # Shuffle before repeat: grain then draws a fresh permutation every epoch.
    ds = ds.shuffle(seed=seed).repeat(None)
  return ds


def text_dataset(source, tokenizer, *, seq_len: int, batch_size: int, train: bool, seed: int = 0,
                 process_index: int = 0, process_count: int = 1, add_bos: bool = True,
                 prefetch: int = 2) -> grain.IterDataset:
  """Documents -> tokens + EOS -> concatenated and split into rows of `seq_len` (+ BOS) -> batches.

  Yields {"tokens": int32 [batch_size, seq_len + add_bos], "example_mask": [batch_size]}. With
  `add_bos` every row starts with BOS, so position 0 is always the same token (the attention-sink
  position the analysis looks at); a causal LM reads tokens[:, :-1] and predicts tokens[:, 1:].
  """
  ds = grain.MapDataset.source(source)
  ds = _shard_shuffle_repeat(ds, train=train, seed=seed, process_index=process_index,
                             process_count=process_count)
  eos = np.asarray([tokenizer.eos_id], np.int32)
  ds = ds.map(lambda text: {"tokens": np.concatenate([tokenizer.encode(text), eos])})
  it = ds.to_iter_dataset()
  it = grain_exp.ConcatThenSplitIterDataset(it, length_struct={"tokens": seq_len})
  bos = np.asarray([tokenizer.bos_id], np.int32)

  def finish(row):
    tokens = row["tokens"].astype(np.int32)
    return np.concatenate([bos, tokens]) if add_bos else tokens

  it = it.map(finish).batch(batch_size, drop_remainder=True)
  it = it.map(lambda tokens: {"tokens": tokens, "example_mask": np.ones(len(tokens), np.float32)})
  if prefetch:
    it = grain_exp.ThreadPrefetchIterDataset(it, prefetch_buffer_size=prefetch)
  return it


def preprocess_image(image: np.ndarray, *, image_size: int, num_channels: int,
                     mean: float | tuple = 0.5, std: float | tuple = 0.5,
                     rng: np.random.Generator | None = None, augment: str = "none") -> np.ndarray:
  """uint8 [H, W, C] -> float32 [image_size, image_size, num_channels], normalised.

  augment: "none"; "flip" (horizontal flip, p=0.5); "crop_flip" (random-resized crop covering
  8-100 % of the area, aspect 3/4-4/3, then flip: the usual ImageNet training augmentation).
  """
  from PIL import Image  # Pillow comes with matplotlib.

  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if augment == "crop_flip" and rng is not None:
    image = _random_resized_crop(image, rng)
  if image.shape[-1] == 1:
    pil = Image.fromarray(image[..., 0], mode="L")
  else:
    pil = Image.fromarray(image[..., :3])
  if pil.size != (image_size, image_size):
    pil = pil.resize((image_size, image_size), Image.BILINEAR)
  out = np.asarray(pil, np.float32) / 255.0
  if out.ndim == 2:
    out = out[..., None]
  if out.shape[-1] != num_channels:
    out = np.broadcast_to(out[..., :1], out.shape[:2] + (num_channels,))
  if augment in ("flip", "crop_flip") and rng is not None and rng.random() < 0.5:
    out = out[:, ::-1]
  return ((out - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)


def _random_resized_crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  h, w = image.shape[:2]
  for _ in range(10):
    area = h * w * rng.uniform(0.08, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch, cw = int(round(np.sqrt(area / aspect))), int(round(np.sqrt(area * aspect)))
    if 0 < ch <= h and 0 < cw <= w:
      y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
      return image[y:y + ch, x:x + cw]
  return image


def image_dataset(source, *, image_size: int, num_channels: int, batch_size: int, train: bool,
                  seed: int = 0, process_index: int = 0, process_count: int = 1,
                  augment: str = "none", mean: Any = 0.5, std: Any = 0.5,
                  prefetch: int = 2) -> grain.IterDataset:
  """Yields {"images": float32 [b, S, S, C], "labels": int32 [b], "example_mask": [b]}.

  Evaluation keeps the last partial batch and pads it (example_mask 0) to a full batch.
  """
  kwargs = dict(image_size=image_size, num_channels=num_channels, mean=mean, std=std)
  if isinstance(source, ArraySource) and not (train and augment != "none"):
    # In-memory images without random augmentation: preprocess each once, then batch indices and
    # gather (grain's per-record overhead would otherwise rival a tiny model's step on 2 cores).
    images = np.stack([preprocess_image(source[i]["image"], **kwargs) for i in range(len(source))])
    labels = np.asarray([source[i]["label"] for i in range(len(source))], np.int32)
    ds = _shard_shuffle_repeat(grain.MapDataset.range(len(source)), train=train, seed=seed,
                               process_index=process_index, process_count=process_count)
    ds = ds.batch(batch_size, drop_remainder=train)
    it = ds.map(lambda idx: {"images": images[idx], "labels": labels[idx]}).to_iter_dataset()
  else:
    ds = _shard_shuffle_repeat(grain.MapDataset.source(source), train=train, seed=seed,
                               process_index=process_index, process_count=process_count)
    if train and augment != "none":
      # random_map draws a generator from (seed, element index): deterministic and resumable.
      ds = ds.random_map(lambda r, rng: {
          "images": preprocess_image(r["image"], rng=rng, augment=augment, **kwargs),
          "labels": np.int32(r["label"])}, seed=seed + 1)
    else:
      ds = ds.map(lambda r: {"images": preprocess_image(r["image"], **kwargs),
                             "labels": np.int32(r["label"])})
    it = ds.to_iter_dataset().batch(batch_size, drop_remainder=train)
  it = it.map(lambda b: pad_batch({**b, "example_mask": np.ones(len(b["labels"]), np.float32)},
                                  batch_size))
  if prefetch:
    it = grain_exp.ThreadPrefetchIterDataset(it, prefetch_buffer_size=prefetch)
  return it


def pad_batch(batch: Batch, batch_size: int) -> Batch:
  """Pads every array on axis 0 with zeros up to batch_size (example_mask 0 marks the padding)."""
  n = len(batch["example_mask"])
  if n == batch_size:
    return batch
  return {k: np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:], v.dtype)])
          for k, v in batch.items()}


def fixed_count(batches, num_batches: int) -> Iterator[Batch]:
  """Exactly `num_batches` batches: the first ones of `batches`, then all-padding copies.

  Every host must run the same number of (collective) eval steps even when its shard of the eval
  split is shorter; padding batches have example_mask 0 and contribute nothing.
  """
  it = iter(batches)
  template = None
  for batch in itertools.islice(it, num_batches):
    template = batch
    yield batch
    num_batches -= 1
  if num_batches and template is None:
    raise ValueError("the evaluation split yielded no batch on this host; lower the batch size")
  for _ in range(num_batches):
    yield {k: np.zeros_like(v) for k, v in template.items()}
  if hasattr(it, "close"):
    it.close()
