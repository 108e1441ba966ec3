"""``corral show``: one field of a model, or Ollama's summary block."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeGuard

from corral_cli.client import Client
from corral_cli.errors import CliError
from corral_cli.formatting import human_number
from corral_cli.session import show
from corral_cli.table import display_width, render_table

FIELDS = ("license", "modelfile", "parameters", "template", "system")
_WIDE_SECTIONS = ("Template", "System", "License")
Rows = list[list[str]]


def show_model(client: Client, args: argparse.Namespace) -> int:
    """``corral show MODEL [--license|--modelfile|--parameters|--template|--system] [-v]``."""
    chosen = [name for name in FIELDS if getattr(args, name)]
    if len(chosen) > 1:
        raise CliError("only one of '--license', '--modelfile', '--parameters', '--system', or '--template' "
                       "can be specified")
    info = show(client, args.model, **({"verbose": True} if args.verbose else {}))
    if "image" in (info.get("capabilities") or []):
        raise CliError("image generation models are not currently supported")
    if not chosen:
        sys.stdout.write(render_info(info, args.verbose))
        return 0
    value = str(info.get(chosen[0]) or "")
    # Ollama prints license, modelfile and parameters with a newline, system and template as they are.
    sys.stdout.write(value if chosen[0] in ("system", "template") else value + "\n")
    return 0


def _section(title: str, rows: Rows) -> str:
    width = 100 if title in _WIDE_SECTIONS else 30
    return f"  {title}\n" + render_table(rows, max_width=width) + "\n"


def render_info(info: Mapping[str, Any], verbose: bool = False) -> str:
    """The summary block of ``corral show`` (and ``/show info``)."""
    sections: list[tuple[str, Callable[[], Rows]]] = [("Model", lambda: _model_rows(info))]
    if info.get("capabilities"):
        sections.append(("Capabilities", lambda: [["", str(c)] for c in info["capabilities"]]))
    if info.get("projector_info") is not None:
        sections.append(("Projector", lambda: _projector_rows(info["projector_info"])))
    if info.get("parameters"):
        sections.append(("Parameters", lambda: _parameter_rows(str(info["parameters"]))))
    if info.get("model_info") is not None and verbose:
        sections.append(("Metadata", lambda: _metadata_rows(info["model_info"])))
    if info.get("tensors") and verbose:
        sections.append(("Tensors", lambda: [["", str(t.get("name", "")), str(t.get("type", "")),
                                              _go_value(t.get("shape", []))] for t in info["tensors"]]))
    if info.get("system"):
        sections.append(("System", lambda: _head(str(info["system"]), 2)))
    if info.get("license"):
        sections.append(("License", lambda: _head(str(info["license"]), 2)))
    return "".join(_section(title, rows()) for title, rows in sections)


def _model_rows(info: Mapping[str, Any]) -> Rows:
    details = info.get("details") or {}
    model_info = info.get("model_info")
    rows: Rows = []
    if info.get("remote_host"):
        rows += [["", "Remote model", str(info.get("remote_model") or "")], ["", "Remote URL", info["remote_host"]]]
    if model_info is None:
        rows += [["", "architecture", str(details.get("family") or "")],
                 ["", "parameters", str(details.get("parameter_size") or "")]]
    else:
        rows += _architecture_rows(model_info, details)
    rows.append(["", "quantization", str(details.get("quantization_level") or "")])
    if info.get("requires"):
        rows.append(["", "requires", str(info["requires"])])
    return rows


def _architecture_rows(model_info: Mapping[str, Any], details: Mapping[str, Any]) -> Rows:
    arch = model_info.get("general.architecture")
    arch = arch if isinstance(arch, str) else ""
    rows: Rows = [["", "architecture", arch]] if arch else []
    parameters = str(details.get("parameter_size") or "")
    count = model_info.get("general.parameter_count")
    if not parameters and _is_number(count):
        parameters = human_number(int(count))
    if parameters:
        rows.append(["", "parameters", parameters])
    for key, label in (("context_length", "context length"), ("embedding_length", "embedding length")):
        value = model_info.get(f"{arch}.{key}")
        if _is_number(value):
            rows.append(["", label, _fixed(value)])
    return rows


def _projector_rows(projector: Mapping[str, Any]) -> Rows:
    arch = projector.get("general.architecture")
    arch = arch if isinstance(arch, str) else ""
    rows: Rows = [["", "architecture", arch]] if arch else []
    if _is_number(projector.get("general.parameter_count")):
        rows.append(["", "parameters", human_number(int(projector["general.parameter_count"]))])
    for suffix, label in (("embedding_length", "embedding length"), ("projection_dim", "dimensions")):
        for modality in ("vision", "audio"):
            value = projector.get(f"{arch}.{modality}.{suffix}")
            if _is_number(value):
                rows.append(["", label, _fixed(value)])
                break
    return rows


def _parameter_rows(parameters: str) -> Rows:
    return [["", *line.split()] for line in parameters.splitlines() if line]


def _metadata_rows(model_info: Mapping[str, Any]) -> Rows:
    return [["", key, _metadata_value(model_info[key])] for key in sorted(model_info)]


def _metadata_value(value: Any) -> str:
    if isinstance(value, list):
        return _short_list(value)
    if isinstance(value, (bool, str, int, float)):
        return _go_value(value)
    return "<nil>" if value is None else "map[string]interface {}"


def _short_list(values: list[Any]) -> str:
    """As many items as fit in about ten columns, then ``...+N more]``."""
    shown, total = 0, 1
    for index, item in enumerate(values):
        width = display_width(_go_value(item)) + (2 if index else 0)
        if total + width > 10 and index:
            break
        total, shown = total + width, shown + 1
    if shown < len(values):
        return _go_value(values[:shown])[:-1] + f" ...+{len(values) - shown} more]"
    return _go_value(values)


def _head(text: str, limit: int) -> Rows:
    """The first ``limit`` non-empty trimmed lines, then ``...`` when there are more."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    rows = [["", line] for line in lines[:limit]]
    return rows + [["", "..."]] if len(lines) > limit else rows


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fixed(value: float) -> str:
    """Go's FormatFloat(v, 'f', -1, 64): shortest digits, never an exponent."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return format(Decimal(repr(float(value))), "f")


def _go_value(value: Any) -> str:
    """Go's ``%v`` of a decoded JSON value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _go_float(float(value))
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    return str(value)


def _go_float(value: float) -> str:
    """Go's ``%v``/``%g`` of a float64: shortest digits, exponent form below 1e-4 or from 1e6."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exponent) - 1
    if point < -4 or point >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{'-' if sign else ''}{mantissa}e{'-' if point < 0 else '+'}{abs(point):02d}"
    return ("-" if sign else "") + format(Decimal(repr(abs(value))).normalize(), "f")
