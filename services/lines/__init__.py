"""Packaging-line counting: frame feeds, the bin counter, roll-ups, targets, alerts, dashboard figures,
replay and the simulator.

May import: ``hitl`` and everything below it; not its siblings (sagemaker, dataset_filter, faces).
"""
