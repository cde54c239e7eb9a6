"""Evaluation: NSNet beside the baselines that share its recognizer, and the metrics."""
