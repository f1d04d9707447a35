"""Data: tokenizers, the embedded offline corpus, tfds sources and grain pipelines (a leaf package)."""
from outeffhop_jax.data import embedded, synthetic, timeseries
from outeffhop_jax.data.pipeline import fixed_count, image_dataset, pad_batch, preprocess_image, text_dataset
from outeffhop_jax.data.sources import ArraySource, image_source, text_source
from outeffhop_jax.data.tokenizers import ByteTokenizer, HFTokenizer, get_tokenizer

__all__ = [
    "synthetic", "timeseries",
    "ArraySource", "ByteTokenizer", "HFTokenizer", "embedded", "fixed_count", "get_tokenizer",
    "image_dataset", "image_source", "pad_batch", "preprocess_image", "text_dataset", "text_source",
]
