"""BERT-, OPT- and ViT-style models (Flax NNX) with a pluggable attention normalizer.

    from flax import nnx
    from outeffhop_jax import models
    cfg = models.OPTConfig.from_preset("opt-125m", normalizer="softmax1", gate="linear")
    model = models.OPT(cfg, rngs=nnx.Rngs(0))
    logits_BTV = model(input_ids_BT, attention_mask=mask_BT)
    logits_BTV, acts = models.capture(model, lambda m: m(input_ids_BT))   # outlier metrics
    hf_model_in_jax = models.hf.from_hf(hf_torch_model, normalizer="softmax1")
    encoder = models.hf.from_pretrained(models.packaged.checkpoint("all-MiniLM-L6-v2"))
"""
from outeffhop_jax.models import bert, hf, opt, packaged, sentence, stanhop, vit
from outeffhop_jax.models.bert import BERT, BERTEncoder
from outeffhop_jax.models.configs import BERTConfig, OPTConfig, ViTConfig
from outeffhop_jax.models.opt import OPT
from outeffhop_jax.models.stanhop import STanHopConfig, STanHopNet
from outeffhop_jax.models.vit import ViT
from outeffhop_jax.nn.capture import capture, set_capture

OUTLIER_MODULES = {"opt": opt.OUTLIER_MODULES, "bert": bert.OUTLIER_MODULES,
                   "vit": vit.OUTLIER_MODULES, "stanhop": stanhop.OUTLIER_MODULES}

__all__ = [
    "STanHopConfig", "STanHopNet", "stanhop",
    "BERT", "BERTConfig", "BERTEncoder", "OPT", "OPTConfig", "OUTLIER_MODULES", "ViT", "ViTConfig",
    "bert", "capture", "hf", "opt", "packaged", "sentence", "set_capture", "vit",
]
