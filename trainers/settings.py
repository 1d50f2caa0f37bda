"""Typed model settings (``models/settings.py``) from config keys.

A ``ConfigKeys`` ties each field of a settings dataclass to one config key. The trainer
module that owns those keys declares them with it (their defaults are the dataclass's, so a
default is written once) and reads the settings back from a run's config; a bad value is
then an error naming the key, raised before CLIP or any data is loaded.
"""

import contextlib
import dataclasses

from yacs.config import CfgNode as CN

from models.settings import SettingError


def _node_and_leaf(cfg, key, create=False):
    node = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        if part not in node:
            if not create:
                raise KeyError(f"config key '{key}' is not declared")
            node[part] = CN()
        node = node[part]
    return node, parts[-1]


class ConfigKeys:
    """``settings_type``'s fields and the config keys they are read from. ``fixed``: the
    values of fields that no key holds (a method that reads only some of them from its
    authors' keys); with it, a field neither keyed nor fixed keeps its default."""

    def __init__(self, settings_type, fixed=None, **keys):
        names = [f.name for f in dataclasses.fields(settings_type)]
        given = sorted([*keys, *(fixed or {})])
        if (given != sorted(names)) if fixed is None else not set(given) <= set(names):
            raise TypeError(f"{settings_type.__name__}: keys for {given}, fields {names}")
        self.settings_type = settings_type
        self.keys = keys
        self.fixed = fixed or {}

    def declare(self, cfg, **defaults):
        """Add the keys to ``cfg`` (in an ``extend_cfg``) with the dataclass defaults, or
        ``defaults`` by field (e.g. the authors' defaults of their keys)."""
        dataclass_defaults = self.settings_type()
        for name, key in self.keys.items():
            node, leaf = _node_and_leaf(cfg, key, create=True)
            node[leaf] = defaults.get(name, getattr(dataclass_defaults, name))

    def read(self, cfg, **read_otherwise):
        """The settings held by ``cfg`` (``read_otherwise``: fields whose key the caller read
        itself); a bad value raises ``ValueError`` naming its key."""
        values = dict(self.fixed)
        for name, key in self.keys.items():
            node, leaf = _node_and_leaf(cfg, key)
            values[name] = read_otherwise.get(name, node[leaf])
        with named_keys(self):
            return self.settings_type(**values)

    def key_of(self, settings_type, field):
        return self.keys[field] if settings_type is self.settings_type else None


@contextlib.contextmanager
def named_keys(*config_keys):
    """Turn a ``SettingError`` raised inside (reading settings, building a model) into a
    ``ValueError`` that names the config key of the offending field."""
    try:
        yield
    except SettingError as err:
        for keys in config_keys:
            key = keys.key_of(err.settings_type, err.field)
            if key is not None:
                raise ValueError(f"{key} {err.message}") from None
        raise
