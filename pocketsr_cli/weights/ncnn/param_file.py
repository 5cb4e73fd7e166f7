"""Parsing an ncnn ``.param`` file (the text form ``onnx2ncnn`` writes) into layers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pocketsr_cli.errors import ModelError

MAGIC = 7767517
_ARRAY_KEY_BASE = -23300  # ncnn writes array param N under the key -23300 - N

ParamValue = int | float | tuple[int | float, ...]


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a ``.param`` file.

    ``params`` maps a param id to its value; array params (written ``-233NN=count,v,...``)
    are stored under their id ``NN`` as a tuple without the count.
    """

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: Mapping[int, ParamValue] = field(default_factory=dict)

    def int_param(self, key: int, default: int) -> int:
        """Return integer param ``key`` or ``default``; raise ModelError if it is not an int."""
        value = self.params.get(key, default)
        if not isinstance(value, int):
            raise ModelError(
                f"ncnn layer '{self.name}' ({self.type}): param {key}={value!r} is not an integer"
            )
        return value

    def float_param(self, key: int, default: float) -> float:
        """Return scalar param ``key`` as a float or ``default``; raise ModelError on arrays."""
        value = self.params.get(key, default)
        if isinstance(value, tuple):
            raise ModelError(
                f"ncnn layer '{self.name}' ({self.type}): param {key} is an array, not a number"
            )
        return float(value)

    def array_param(self, key: int) -> tuple[float, ...]:
        """Return array param ``key`` as floats; an absent array is empty."""
        value = self.params.get(key, ())
        if not isinstance(value, tuple):
            raise ModelError(
                f"ncnn layer '{self.name}' ({self.type}): param {key} is a number, not an array"
            )
        return tuple(float(v) for v in value)


@dataclass(frozen=True)
class NcnnGraph:
    """A parsed ``.param`` file: layers in file order (which ncnn requires to be topological)."""

    layers: tuple[NcnnLayer, ...]
    blob_count: int

    def layer_types(self) -> dict[str, int]:
        """Count layers per type, in order of first appearance."""
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.type] = counts.get(layer.type, 0) + 1
        return counts


def _parse_number(token: str, where: str) -> int | float:
    # ncnn's own rule: a value containing '.' or an exponent is a float, otherwise an int.
    try:
        if any(c in token for c in ".eE") and not token.lower().startswith("0x"):
            return float(token)
        return int(token)
    except ValueError:
        raise ModelError(f"malformed ncnn param: {where}: bad number {token!r}") from None


def _parse_params(tokens: Sequence[str], where: str) -> dict[int, ParamValue]:
    params: dict[int, ParamValue] = {}
    for token in tokens:
        key_text, sep, value_text = token.partition("=")
        if not sep:
            raise ModelError(f"malformed ncnn param: {where}: expected key=value, got {token!r}")
        key = _parse_number(key_text, where)
        if not isinstance(key, int):
            raise ModelError(f"malformed ncnn param: {where}: bad param key {key_text!r}")
        if key <= _ARRAY_KEY_BASE:
            items = [_parse_number(v, where) for v in value_text.split(",")]
            count = items[0]
            if not isinstance(count, int) or count != len(items) - 1:
                raise ModelError(
                    f"malformed ncnn param: {where}: array param {key} announces {count} "
                    f"values but has {len(items) - 1}"
                )
            params[_ARRAY_KEY_BASE - key] = tuple(items[1:])
        else:
            params[key] = _parse_number(value_text, where)
    return params


def parse_param(text: str) -> NcnnGraph:
    """Parse the text of an ncnn ``.param`` file.

    Checks the magic number, the announced layer count (exactly) and blob count (at least
    the number of distinct blobs the layers produce), and each layer's bottom/top counts.

    Raises:
        ModelError: the text is not a well-formed ncnn text param file.
    """
    lines = [line.split() for line in text.splitlines()]
    lines = [tokens for tokens in lines if tokens]
    if not lines or lines[0] != [str(MAGIC)]:
        found = " ".join(lines[0])[:40] if lines else "an empty file"
        raise ModelError(
            f"not an ncnn text .param file: expected magic number {MAGIC} on the first line, "
            f"found {found!r}"
        )
    if len(lines) < 2 or len(lines[1]) != 2 or not all(t.isdigit() for t in lines[1]):
        raise ModelError("malformed ncnn param: second line must be '<layer count> <blob count>'")
    layer_count, blob_count = int(lines[1][0]), int(lines[1][1])
    body = lines[2:]
    if len(body) != layer_count:
        raise ModelError(
            f"malformed ncnn param: header announces {layer_count} layers, file has {len(body)}"
        )

    layers = []
    produced: set[str] = set()
    for number, tokens in enumerate(body, start=3):
        where = f"line {number}"
        if len(tokens) < 4 or not tokens[2].isdigit() or not tokens[3].isdigit():
            raise ModelError(
                f"malformed ncnn param: {where}: expected "
                "'<type> <name> <bottom count> <top count> ...'"
            )
        n_bottom, n_top = int(tokens[2]), int(tokens[3])
        if len(tokens) < 4 + n_bottom + n_top:
            raise ModelError(f"malformed ncnn param: {where}: fewer blob names than announced")
        bottoms = tuple(tokens[4 : 4 + n_bottom])
        tops = tuple(tokens[4 + n_bottom : 4 + n_bottom + n_top])
        params = _parse_params(tokens[4 + n_bottom + n_top :], f"{where} ({tokens[1]})")
        layers.append(NcnnLayer(tokens[0], tokens[1], bottoms, tops, params))
        produced.update(tops)
    if len(produced) > blob_count:  # ncnn sizes its blob table from the header
        raise ModelError(
            f"malformed ncnn param: header announces {blob_count} blobs, layers produce "
            f"{len(produced)}"
        )
    return NcnnGraph(tuple(layers), blob_count)
