"""Outlier regrowth: repair per attention arm, then continued contrastive training over seeds."""
