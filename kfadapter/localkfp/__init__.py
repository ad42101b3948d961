"""The embedded KFP server: the KFP v2beta1 REST API on one machine (see docs/local-kfp.md)."""
