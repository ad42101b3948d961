"""kfadapter: a REST adapter between the O-RAN training manager and Kubeflow Pipelines."""

__version__ = "0.1.0"
