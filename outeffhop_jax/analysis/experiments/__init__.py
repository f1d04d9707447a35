"""The experiments built on the analysis libraries; each folder holds its CLI part, report and plots.

  study     train (or reuse) a preset's attention variants, then outliers + W8A8 tables and plots
  inspect   a pretrained checkpoint (the packaged MiniLM encoder): outliers, W8A8, ablations
  repair    fine-tune the pretrained encoder to remove its outliers (distillation + a change)
"""
