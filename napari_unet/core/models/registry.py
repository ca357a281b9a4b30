"""Build networks by name: ``build_model("unet", depth=3, base_channels=16)``.

Modelled on torchvision's ``register_model``/``get_model``: every architecture registers itself
under a short name; its settings are keyword arguments checked against its frozen config
dataclass, so an unknown or bad setting raises ``ValueError`` naming the key.

Example:
    >>> from napari_unet.core.models import build_model
    >>> net = build_model("unet", depth=2, base_channels=8)
    >>> (net.arch, net.config["depth"])
    ('unet', 2)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from napari_unet.core.models.base import SegmentationNet

N = TypeVar("N", bound=type[SegmentationNet])

_REGISTRY: dict[str, type[SegmentationNet]] = {}


def register_model(name: str) -> Callable[[N], N]:
    """Class decorator registering a :class:`SegmentationNet` subclass under ``name``.

    The class must define ``config_class`` (a frozen Config dataclass with defaults for every field)
    and take an instance of it as the only positional argument of ``__init__``.

    Raises:
        ValueError: ``name`` is already taken by another class.
    """

    def decorator(cls: N) -> N:
        if not (isinstance(cls, type) and issubclass(cls, SegmentationNet)):
            raise TypeError(f"register_model({name!r}) expects a SegmentationNet subclass")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"architecture {name!r} is already registered")
        cls.arch = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def list_architectures() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_REGISTRY)


def _lookup(name: str) -> type[SegmentationNet]:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown architecture {name!r}; known architectures: {', '.join(list_architectures())}"
        ) from None


def architecture_spatial_dims(name: str) -> int:
    """2 or 3: whether architecture ``name`` works on images or on volumes (no model is built).

    Raises:
        ValueError: Unknown ``name`` (the message lists the known names).
    """
    return int(_lookup(name).spatial_dims)


def default_config(name: str) -> dict[str, Any]:
    """The default settings of architecture ``name`` as a plain dict."""
    return _lookup(name).config_class().to_dict()


def build_model(name: str, **config: Any) -> SegmentationNet:
    """Build the registered architecture ``name`` with keyword settings ``config``.

    Args:
        name: A name from :func:`list_architectures`.
        **config: Settings of that architecture (missing ones take their defaults).

    Returns:
        A freshly initialised :class:`SegmentationNet` (on the CPU, float32, train mode).

    Raises:
        ValueError: Unknown ``name`` (the message lists the known names), unknown setting (named),
            or a setting with a bad value (named).
    """
    cls = _lookup(name)
    try:
        settings = cls.config_class.from_dict(dict(config))
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from err
    except TypeError as err:  # wrong types the config's __post_init__ did not anticipate
        raise ValueError(f"{name}: bad settings {config!r} ({err})") from err
    return cls(settings)
