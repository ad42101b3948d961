"""The names Argo gives a run's nodes and pods (POD_NAMES v2), as KFP reads them back."""

from __future__ import annotations


def fnv32a(text: str) -> int:
    """FNV-1a (32 bit) of the UTF-8 text: Argo's hash of node names."""
    value = 0x811C9DC5
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def node_id(workflow: str, node_name: str) -> str:
    """Argo's id of a node: the workflow's name for its own node, else `<workflow>-<hash>`."""
    return workflow if node_name == workflow else f"{workflow}-{fnv32a(node_name)}"


def pod_name(workflow: str, node_name: str, template: str) -> str:
    """The pod of a node that runs `template` (KFP's `common/util/workflow.go`
    RetrievePodName, Argo's POD_NAMES v2): `<workflow>-<template>-<hash of the node name>`;
    the workflow's own node's pod is the workflow, an inline template's `<workflow>-<hash>`."""
    if node_name == workflow:
        return workflow
    prefix = workflow if ".inline" in node_name else f"{workflow}-{template}"
    return f"{prefix}-{fnv32a(node_name)}"
