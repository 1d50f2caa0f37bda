"""What a sweep runs: one protocol over trainers x datasets x shots x configs x seeds.

A spec is a YAML file (or the same fields as ``scripts.sweep`` flags)::

    protocol: fewshot            # fewshot | base2new | cross
    root: /data                  # --root of train.py (the folder holding the datasets)
    output: output               # run directories go below it
    trainers: [CoOp, DPT]
    datasets: [caltech101, dtd]  # configs/datasets/<name>.yaml, or paths; cross: the targets
    source: imagenet             # cross only: the dataset trained on
    shots: [1, 2, 4, 8, 16]
    seeds: [1, 2, 3]
    configs: [vit_b16]           # configs/trainers/<Trainer>/<name>.yaml, or paths; or per
                                 # trainer, a list or {shots: config}:
                                 #   {CoOp: [vit_b16], DPT: {1: vit_b16_ep50, 16: vit_b16_ep200}}
    opts: [OPTIM.MAX_EPOCH, 5]   # KEY VALUE overrides for every run
    tag: ""                      # appended to the setting folder, for sweeps over other keys

Relative ``root`` and ``output`` are taken from the current directory.
"""

import os
from dataclasses import dataclass, field, fields

import yaml

PROTOCOLS = ("fewshot", "base2new", "cross")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Spec:
    protocol: str = "fewshot"
    root: str = ""
    output: str = "output"
    trainers: list = field(default_factory=list)
    datasets: list = field(default_factory=list)
    source: str = "imagenet"
    shots: list = field(default_factory=lambda: [16])
    seeds: list = field(default_factory=lambda: [1, 2, 3])
    configs: list | dict = field(default_factory=lambda: ["vit_b16"])
    opts: list = field(default_factory=list)
    tag: str = ""

    def check(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got '{self.protocol}'")
        for name in ("trainers", "datasets", "shots", "seeds", "configs"):
            if not getattr(self, name):
                raise ValueError(f"the sweep needs '{name}' (in the spec or as --{name})")
        if len(self.opts) % 2:
            raise ValueError(f"opts must be KEY VALUE pairs, got {self.opts}")
        for trainer in self.trainers:
            for shots in self.shots:
                self.configs_for(trainer, shots)  # every combination has a config
        return self

    def configs_for(self, trainer, shots):
        """The config files (paths) of ``trainer`` at ``shots``."""
        names = self.configs
        if isinstance(names, dict):
            if trainer not in names:
                raise ValueError(f"configs names no config for trainer '{trainer}'")
            names = names[trainer]
        if isinstance(names, dict):
            if shots not in names:
                raise ValueError(f"configs of '{trainer}' name none for {shots} shots")
            names = [names[shots]]
        if isinstance(names, str):
            names = [names]
        return [trainer_config(trainer, name) for name in names]


def _config_path(name, folder):
    """``name`` itself when it is a file path, else ``<folder>/<name>.yaml`` in the repo."""
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        return os.path.abspath(name)
    return os.path.join(REPO, "configs", folder, f"{name}.yaml")


def method_type(trainer):
    """The registered method class named ``trainer`` (imports the methods, and so torch)."""
    import trainers  # noqa: F401  (registers the methods)
    from engine.registry import TRAINER_REGISTRY

    return TRAINER_REGISTRY.get(trainer)


def is_closed_set(trainer):
    """Whether the method ``trainer`` classifies only the classes it was trained on
    (``Method.closed_set``); False for a name that no method of ours has (e.g. results of
    Dassl's or the authors' trainers)."""
    import trainers  # noqa: F401  (registers the methods)
    from engine.registry import TRAINER_REGISTRY

    return trainer in TRAINER_REGISTRY and method_type(trainer).closed_set


def trainer_config(trainer, name):
    """A config file of ``trainer``: a path, or a name in the folder of its method's config
    files (``configs/trainers/<folder>/<name>.yaml``)."""
    folder = method_type(trainer).config_folder or trainer
    return _config_path(str(name), os.path.join("trainers", folder))


def dataset_config(name):
    return _config_path(str(name), "datasets")


def config_name(path):
    """The name that run directories use for a config file: its stem."""
    return os.path.splitext(os.path.basename(path))[0]


def load_spec(path=None, **given):
    """A ``Spec`` from a YAML file, with the ``given`` fields (not None) on top; given
    ``opts`` come after the file's (the later value of a key wins)."""
    values = {}
    if path:
        with open(path) as f:
            values = yaml.safe_load(f) or {}
        known = {f.name for f in fields(Spec)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {unknown}; fields are {sorted(known)}")
    given = {key: value for key, value in given.items() if value is not None}
    given["opts"] = list(values.get("opts") or []) + list(given.get("opts") or [])
    values.update(given)
    spec = Spec(**values)
    spec.opts = [str(item) for item in spec.opts]
    spec.root = os.path.abspath(spec.root) if spec.root else ""
    spec.output = os.path.abspath(spec.output)
    return spec.check()
