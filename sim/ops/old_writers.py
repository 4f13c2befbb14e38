"""How each generation of the old server's writers put the runtime and inference id in
turn metadata: the shapes :mod:`sim.ops.samples` writes, and what each must project to.

A shape takes the true value and a stale one and returns the metadata fragment written
and the value a correct projection must recover from it (``""`` when nothing usable
names one). An era is a writer generation: the runtime shapes and inference-id shapes it
used. Together they cover every alias and shape of domain.md's metadata keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from persisters.model import KEY_INFERENCE_ID, KEY_RUNTIME

#: (the true value, a stale one) -> (the metadata fragment written, what it projects to).
Shape = Callable[[str, str], tuple[dict[str, Any], str]]

RUNTIME_SHAPES: dict[str, Shape] = {
    "geppetto": lambda rk, other: ({KEY_RUNTIME: rk}, rk),
    "geppetto_padded": lambda rk, other: ({KEY_RUNTIME: f"  {rk}\n"}, rk),
    "geppetto_over_legacy": lambda rk, other: ({KEY_RUNTIME: rk, "runtime": other}, rk),
    "empty_geppetto_then_legacy": lambda rk, other: ({KEY_RUNTIME: "", "runtime_key": rk}, rk),
    "object_runtime_key": lambda rk, other: (
        {KEY_RUNTIME: {"runtime_key": rk, "profile": rk.split("@")[0]}},
        rk,
    ),
    "object_key": lambda rk, other: ({KEY_RUNTIME: {"key": rk, "version": 1}}, rk),
    "object_slug": lambda rk, other: ({KEY_RUNTIME: {"slug": rk}}, rk),
    "object_blank_then_profile": lambda rk, other: (
        {KEY_RUNTIME: {"runtime_key": " ", "profile": rk}},
        rk,
    ),
    "object_profile_key": lambda rk, other: ({KEY_RUNTIME: {"profile_key": rk}}, rk),
    "legacy_runtime": lambda rk, other: ({"runtime": rk}, rk),
    "legacy_runtime_key": lambda rk, other: ({"runtime_key": rk}, rk),
    "legacy_object": lambda rk, other: ({"runtime": {"slug": rk}}, rk),
    # Unknown: nothing usable names the runtime.
    "none": lambda rk, other: ({}, ""),
    "blank": lambda rk, other: ({KEY_RUNTIME: "   "}, ""),
    "empty_object": lambda rk, other: ({KEY_RUNTIME: {"profile": ""}}, ""),
    "null": lambda rk, other: ({KEY_RUNTIME: None}, ""),
}

INFERENCE_SHAPES: dict[str, Shape] = {
    "geppetto": lambda iid, other: ({KEY_INFERENCE_ID: iid}, iid),
    "geppetto_over_legacy": lambda iid, other: (
        {KEY_INFERENCE_ID: iid, "inference_id": other},
        iid,
    ),
    "legacy": lambda iid, other: ({"inference_id": iid}, iid),
    # Some old writers used a numeric counter; it is projected as its text.
    "numeric": lambda iid, other: (
        {"inference_id": int(iid.replace("-", "")[:12], 16)},
        str(int(iid.replace("-", "")[:12], 16)),
    ),
    "none": lambda iid, other: ({}, ""),
}

#: era -> (runtime shapes, inference shapes) that writer generation used.
ERAS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "v0": (("none", "none", "none", "blank"), ("none", "numeric")),
    "v1": (
        ("legacy_runtime", "legacy_runtime_key", "legacy_object", "none"),
        ("legacy", "numeric", "none"),
    ),
    "v2": (
        (
            "object_runtime_key",
            "object_key",
            "object_slug",
            "object_blank_then_profile",
            "object_profile_key",
            "empty_object",
        ),
        ("geppetto", "legacy"),
    ),
    "v3": (
        (
            "geppetto",
            "geppetto",
            "geppetto_padded",
            "geppetto_over_legacy",
            "empty_geppetto_then_legacy",
            "null",
        ),
        ("geppetto", "geppetto", "geppetto_over_legacy"),
    ),
}
#: How common each era's conversations are, in the order of ERAS.
ERA_WEIGHTS = (2, 3, 3, 4)
#: Eras whose timeline writer recorded profile switches as entities.
ERAS_RECORDING_SWITCHES = frozenset({"v2", "v3"})
