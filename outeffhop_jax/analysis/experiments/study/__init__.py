"""The training study: `run` (CLI options, orchestration), `runs` (a trained run as the study
sees it), `report` (results.md), `plots`."""
