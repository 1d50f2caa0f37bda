"""Readers for the benchmarks' annotation files, with errors that name the file and line."""

import json


class AnnotationError(ValueError):
    """An annotation file that cannot be parsed."""


def read_lines(path):
    """The non-empty lines of a text file, stripped, with their 1-based line numbers."""
    with open(path) as f:
        return [(number, line.strip()) for number, line in enumerate(f, 1) if line.strip()]


def read_fields(path, min_fields):
    """``[(line_number, fields)]``: each non-empty line split at whitespace, at least
    ``min_fields`` fields per line."""
    rows = []
    for number, line in read_lines(path):
        fields = line.split()
        if len(fields) < min_fields:
            raise AnnotationError(
                f"{path}, line {number}: expected at least {min_fields} fields separated by "
                f"spaces, got '{line}'"
            )
        rows.append((number, fields))
    return rows


def read_json_mapping(path):
    """A JSON object of strings (e.g. Flowers' cat_to_name.json)."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise AnnotationError(f"{path} must hold one JSON object mapping keys to names")
    return obj


def read_mat(path, key):
    """The variable ``key`` of a MATLAB .mat file (scipy reads them; needed only when a split
    is generated from the original annotations)."""
    try:
        from scipy.io import loadmat
    except ImportError as err:
        raise ImportError(
            f"Reading '{path}' needs scipy (pip install 'scipy>=1.10'); alternatively use "
            "CoOp's split file, which makes the .mat files unnecessary"
        ) from err
    try:
        contents = loadmat(path)
    except Exception as err:  # scipy raises ValueError, TypeError, MatReadError, ...
        raise AnnotationError(f"Cannot read MATLAB file '{path}': {err}") from err
    if key not in contents:
        raise AnnotationError(f"MATLAB file '{path}' has no variable '{key}'")
    return contents[key]


def lookup(mapping, key, path, number, what):
    """``mapping[key]``, or an error naming the file and line that used an unknown ``key``."""
    try:
        return mapping[key]
    except KeyError:
        raise AnnotationError(f"{path}, line {number}: unknown {what} '{key}'") from None
