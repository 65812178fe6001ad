"""A call's abstract signature as JSON, and back: what the warm-start manifest stores.

Encoding runs on the compile path of the jit wrapper and imports nothing;
decoding builds ``jax.ShapeDtypeStruct`` stand-ins (and shardings) to compile
with, so it imports jax when called.  The argument tree may hold tuples,
lists, dicts with string keys, namedtuples and None; array leaves keep shape,
dtype, weak type and a committed sharding (single-device or named; other
kinds are written as "none" and warm the default placement); static
arguments must be plain JSON values.  Anything else is :class:`Unrepresentable`.
"""

from __future__ import annotations

import importlib
import json
from typing import Any


class Unrepresentable(Exception):
    """An argument with no JSON form (a custom pytree node, an object as static argument)."""


def encode_call(args: tuple[Any, ...], kwargs: dict[str, Any], static_argnums: tuple[int, ...],
                static_argnames: tuple[str, ...]) -> dict[str, Any]:
    """``{"args": [...], "kwargs": {...}}`` with static arguments as ``{"static": value}``."""
    enc_args = [{"static": _static(a)} if i in static_argnums else _tree(a) for i, a in enumerate(args)]
    enc_kwargs = {k: {"static": _static(v)} if k in static_argnames else _tree(v)
                  for k, v in sorted(kwargs.items())}
    return {"args": enc_args, "kwargs": enc_kwargs}


def canonical(sig: dict[str, Any]) -> str:
    return json.dumps(sig, sort_keys=True, separators=(",", ":"))


def _static(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list):
        return {type(value).__name__: [_static(v) for v in value]}
    raise Unrepresentable(f"static argument of type {type(value).__qualname__}")


def _tree(x: Any) -> Any:
    if x is None:
        return None
    shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
    if shape is not None and dtype is not None and not isinstance(x, tuple | list | dict):
        return _array(x, shape, dtype)
    if isinstance(x, bool | int | float | complex):
        return {"scalar": type(x).__name__}
    if isinstance(x, tuple) and hasattr(type(x), "_fields"):
        cls: Any = type(x)
        return {"namedtuple": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f: _tree(getattr(x, f)) for f in cls._fields}}
    if type(x) in (tuple, list):
        return {type(x).__name__: [_tree(v) for v in x]}
    if type(x) is dict:
        if not all(isinstance(k, str) for k in x):
            raise Unrepresentable("a dict with non-string keys")
        return {"dict": {k: _tree(x[k]) for k in sorted(x)}}
    raise Unrepresentable(f"a pytree node of type {type(x).__qualname__}")


def _array(x: Any, shape: Any, dtype: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"shape": [int(d) for d in shape], "dtype": str(dtype)}
    if getattr(x, "weak_type", False):
        out["weak"] = True
    # an uncommitted array carries no sharding into jit's cache key (as in jit._abstract)
    committed = getattr(x, "committed", getattr(x, "_committed", True))
    sharding = getattr(x, "sharding", None) if committed else None
    if sharding is not None:
        out["sharding"] = _sharding(sharding)
    return out


def _sharding(s: Any) -> Any:
    kind = type(s).__name__
    if kind == "SingleDeviceSharding":
        return {"device": int(next(iter(s.device_set)).id)}
    if kind == "NamedSharding":
        mesh = s.mesh
        spec = [list(p) if isinstance(p, tuple) else p for p in s.spec]
        return {"mesh": {"axes": list(mesh.axis_names), "shape": [int(n) for n in mesh.devices.shape],
                         "devices": [int(d.id) for d in mesh.devices.flat]}, "spec": spec}
    return "none"  # not representable: warm the default placement instead


# --- decoding (imports jax) ----------------------------------------------------------------

class Stale(Exception):
    """A recorded signature that cannot be rebuilt in this process."""


def decode_call(sig: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args = tuple(_undo_static(a["static"]) if isinstance(a, dict) and "static" in a else _untree(a)
                 for a in sig.get("args", []))
    kwargs = {k: _undo_static(v["static"]) if isinstance(v, dict) and "static" in v else _untree(v)
              for k, v in sig.get("kwargs", {}).items()}
    return args, kwargs


def _undo_static(v: Any) -> Any:
    if isinstance(v, dict):
        if "tuple" in v:
            return tuple(_undo_static(x) for x in v["tuple"])
        if "list" in v:
            return [_undo_static(x) for x in v["list"]]
        raise Stale(f"unknown static form {sorted(v)}")
    return v


_ZERO = {"int": 0, "float": 0.0, "bool": False, "complex": 0j}


def _untree(node: Any) -> Any:
    if node is None:
        return None
    if not isinstance(node, dict):
        raise Stale(f"unexpected node {node!r}")
    if "shape" in node:
        import jax
        import numpy as np

        try:
            dtype = np.dtype(node["dtype"])
        except TypeError:
            import jax.numpy as jnp

            dtype = jnp.dtype(node["dtype"])
        return jax.ShapeDtypeStruct(tuple(node["shape"]), dtype, weak_type=bool(node.get("weak")),
                                    sharding=_unsharding(node.get("sharding")))
    if "scalar" in node:
        if node["scalar"] not in _ZERO:
            raise Stale(f"unknown scalar type {node['scalar']!r}")
        return _ZERO[node["scalar"]]
    if "tuple" in node:
        return tuple(_untree(v) for v in node["tuple"])
    if "list" in node:
        return [_untree(v) for v in node["list"]]
    if "dict" in node:
        return {k: _untree(v) for k, v in node["dict"].items()}
    if "namedtuple" in node:
        module, _, qualname = node["namedtuple"].partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            raise Stale(f"namedtuple {node['namedtuple']} is gone ({exc})") from None
        return obj(**{k: _untree(v) for k, v in node["fields"].items()})
    raise Stale(f"unknown node {sorted(node)}")


def _unsharding(s: Any) -> Any:
    if s is None or s == "none":
        return None
    import jax
    import numpy as np

    devices = {d.id: d for d in jax.devices()}
    if "device" in s:
        if s["device"] not in devices:
            raise Stale(f"device {s['device']} is not present")
        return jax.sharding.SingleDeviceSharding(devices[s["device"]])
    mesh = s["mesh"]
    missing = [i for i in mesh["devices"] if i not in devices]
    if missing:
        raise Stale(f"mesh devices {missing} are not present")
    grid = np.array([devices[i] for i in mesh["devices"]], dtype=object).reshape(mesh["shape"])
    spec = [tuple(p) if isinstance(p, list) else p for p in s["spec"]]
    return jax.sharding.NamedSharding(jax.sharding.Mesh(grid, tuple(mesh["axes"])),
                                      jax.sharding.PartitionSpec(*spec))
