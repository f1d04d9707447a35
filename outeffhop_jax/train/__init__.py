"""Training: config -> mesh + sharded state -> jitted steps -> loop with checkpoints and metrics.

    from outeffhop_jax.train import run, evaluate, load_from_workdir
    run(config, workdir)                        # train (or resume) a run
    r = load_from_workdir(workdir)              # model with restored parameters, config, task
    evaluate(r.model, r.config)                 # {"loss", "perplexity", "accuracy", "count"}
    load_metrics(workdir)                       # metrics.jsonl records, damaged lines skipped
"""
from outeffhop_jax.train.checkpoint import CheckpointRestoreError
from outeffhop_jax.train.evaluation import (LoadedRun, eval_batches, eval_key, evaluate,
                                            load_config, load_from_workdir)
from outeffhop_jax.train.loop import NonFiniteLossError, run
from outeffhop_jax.train.metrics import load_metrics
from outeffhop_jax.train.resume import ConfigChangeError

__all__ = ["CheckpointRestoreError", "ConfigChangeError", "LoadedRun", "NonFiniteLossError",
           "eval_batches", "eval_key", "evaluate", "load_config", "load_from_workdir",
           "load_metrics", "run"]
