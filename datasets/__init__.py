"""Datasets register themselves on import; every module of this package is imported here,
so adding a file makes a new dataset available to ``train.py``."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
