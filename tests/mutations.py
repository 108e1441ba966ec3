"""Deterministic mutations of a valid request, for the fuzz test of every gateway route (test_e2e_fuzz.py).

A ``Seed`` is one valid request of a route (a JSON body or raw bytes, path parameters, a query). ``mutate``
turns it, with a seeded ``random.Random``, into one ``Mutation``: a field dropped, a value of the wrong type
(null, number and string swapped, lists, objects, 1e308, 2**64, negatives, empty and very long strings, a
lone surrogate, NaN and 1e999 as raw text), deep nesting, unknown fields, duplicate keys, truncated JSON,
a wrong content type or encoding, an empty body, a body that is not an object, bytes that are not UTF-8,
or path and query parameters that are not what the route expects. ``keep`` names the fields a mutation
must not drop or loosen (the length caps that keep a valid-looking generation short); they only get values
no server may accept.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Raw:
    """A value written into the JSON text as is (what ``json.dumps`` cannot write)."""

    text: str


def _deep(depth: int, kind: str = "[") -> Raw:
    return Raw("[" * depth + "]" * depth if kind == "[" else '{"a":' * depth + "1" + "}" * depth)


LONG = "A" * 2_000  # longer than any name may be; a prompt this long still evaluates quickly on a loaded CPU
WRONG: list[Any] = [
    None, 0, -1, -7, 1.5, 2**64, -(2**64), 2**63, 1e308, -1e308, "", "x", "1", "true", LONG, "\ud800", "\x00",
    "[" * 1_200, '{"a": NaN}', '{"a": 1e999}', Raw("1" + "0" * 400), Raw("-0.0e-999"),
    "../../etc/passwd", True, False, [], [None], ["x", 1], {}, {"x": {"y": [1]}}, Raw("NaN"), Raw("-Infinity"),
    Raw("1e999"), Raw("1" + "0" * 5000), Raw('"\\ud800x"'), _deep(64), _deep(64, "{"),
]
CAP_BAD: list[Any] = [2**64, -(2**64), 2**63, 1e308, -1e308, -3, "2", [], {}, True, Raw("NaN"), Raw("1e999")]
DEPTHS = [40, 200, 900, 5_000, 100_000]
UNKNOWN_KEYS = ["zz_unknown", "", "\ud800", "Model", "__proto__", "k" * 300]
CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                 "application/json; charset=latin-1", "application/xml", "", "*/*", "application/json;;;"]
ENCODINGS = ["gzip", "deflate", "br", "zstd", "identity, gzip", "bogus"]
BODY_OPS = {"drop", "wrong type", "nest", "unknown field", "mixed", "cap"}  # drawn three times as often
PARAMS = ["", ".", "..", "../..", "%2e%2e%2f", "a" * 5_000, "\u00e9t\u00e9", "x y", "sha256:" + "g" * 64,
          "sha256:" + "a" * 64, "-1", "9" * 30, "0", "null", "a/../../b", "%00", ":", "\ud800", "a:b:c"]


@dataclass(frozen=True)
class Seed:
    """One valid request of a route."""

    body: Any = None
    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    keep: tuple[Path, ...] = ()
    admin: bool = False
    expect: int = 200  # the status of the seed itself: a seed that stops being valid fuzzes nothing past parsing


@dataclass
class Mutation:
    """What one fuzz request sends, and which mutation made it."""

    op: str
    content: bytes
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)

    def url(self, template: str) -> str:
        """The path with the (possibly mutated) parameters and query percent-encoded into it."""
        path = template.replace(":path}", "}")
        for name, value in self.params.items():
            path = path.replace("{" + name + "}", _quoted(value, ":"))
        query = "&".join(f"{_quoted(k)}={_quoted(v)}" for k, v in self.query.items())
        return f"{path}?{query}" if query else path


def _quoted(value: str, safe: str = "") -> str:
    """Percent-encoded UTF-8 (a lone surrogate too, as the bytes a careless client would send)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe=safe)


def dumps(value: Any) -> bytes:
    """JSON text of a body that may hold ``Raw`` values (and lone surrogates, written as their escapes)."""
    raws: list[str] = []

    def placeholder(obj: Any) -> Any:
        if isinstance(obj, Raw):
            raws.append(obj.text)
            return f"\x00RAW{len(raws) - 1}\x00"
        raise TypeError(type(obj).__name__)

    text = json.dumps(value, default=placeholder)
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00RAW{i}\x00"), raw)
    return text.encode()


def _paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _paths(child, (*prefix, key))


def _free(path: Path, keep: tuple[Path, ...]) -> bool:
    """Whether a mutation may touch path: it is neither a kept field nor one that contains it."""
    return all(tuple(k[: len(path)]) != path for k in keep)


def _set(body: Any, path: Path, value: Any) -> None:
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value


def _drop(body: Any, path: Path) -> None:
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]


class Mutator:
    """Mutations of one seed, drawn from one ``random.Random``."""

    def __init__(self, seed: Seed, rng: random.Random) -> None:
        self.seed = seed
        self.rng = rng

    def __call__(self) -> Mutation:
        ops = self._ops()
        names = sorted(ops)
        name = self.rng.choices(names, [3 if n in BODY_OPS else 1 for n in names])[0]
        return ops[name](name)

    def _ops(self) -> dict[str, Callable[[str], Mutation]]:
        ops: dict[str, Callable[[str], Mutation]] = {
            "empty body": self._empty, "not utf-8": self._garbage, "content type": self._content_type,
            "content encoding": self._encoding, "query": self._query,
        }
        if self.seed.params:
            ops["path parameter"] = self._param
        if isinstance(self.seed.body, bytes):
            ops["truncated"] = self._truncated
        elif self.seed.body is not None:
            ops.update({"drop": self._structural, "wrong type": self._structural, "nest": self._structural,
                        "unknown field": self._structural, "mixed": self._structural, "not an object": self._top,
                        "duplicate key": self._duplicate, "truncated": self._truncated})
            if self.seed.keep:
                ops["cap"] = self._cap
        return ops

    def original(self) -> Mutation:
        """The seed request itself."""
        return self._mutation("none")

    def _mutation(self, op: str, content: bytes | None = None, **changes: Any) -> Mutation:
        """The seed request, with the changes of one mutation."""
        made = Mutation(op, self._seed_bytes() if content is None else content, dict(self.seed.params),
                        dict(self.seed.query), {"content-type": "application/json"})
        for name, value in changes.items():
            setattr(made, name, value)
        return made

    def _seed_bytes(self) -> bytes:
        body = self.seed.body
        return b"" if body is None else body if isinstance(body, bytes) else dumps(body)

    def _body(self) -> Any:
        return copy.deepcopy(self.seed.body)

    def _empty(self, op: str) -> Mutation:
        return self._mutation(op, self.rng.choice([b"", b"  \n", b"null", b"{}"]))

    def _garbage(self, op: str) -> Mutation:
        noise = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 64)))
        return self._mutation(op, self.rng.choice([b"\xff\xfe" + noise, noise, b'{"model": "\xff"}']))

    def _content_type(self, op: str) -> Mutation:
        return self._mutation(op, headers={"content-type": self.rng.choice(CONTENT_TYPES)})

    def _encoding(self, op: str) -> Mutation:
        return self._mutation(op, headers={"content-type": "application/json",
                                           "content-encoding": self.rng.choice(ENCODINGS)})

    def _param(self, op: str) -> Mutation:
        name = self.rng.choice(sorted(self.seed.params))
        return self._mutation(op, params={**self.seed.params, name: self.rng.choice(PARAMS)})

    def _query(self, op: str) -> Mutation:
        name = self.rng.choice(sorted(self.seed.query) + ["zz", "stream", "model", ""])
        return self._mutation(op, query={**self.seed.query, name: self.rng.choice(PARAMS)})

    def _truncated(self, op: str) -> Mutation:
        whole = self._seed_bytes()
        return self._mutation(op, whole[: self.rng.randrange(0, max(len(whole), 1))])

    def _top(self, op: str) -> Mutation:
        return self._mutation(op, dumps(self.rng.choice([[], "x", 5, [self._body()], Raw("NaN"), _deep(200)])))

    def _duplicate(self, op: str) -> Mutation:
        body = self._body()
        if not isinstance(body, dict) or not body:
            return self._top(op)
        key = self.rng.choice(sorted(k for k in body if _free((k,), self.seed.keep)) or ["zz_unknown"])
        whole = dumps(body)
        return self._mutation(op, whole[:-1] + b", " + dumps({key: self.rng.choice(WRONG)})[1:])

    def _cap(self, op: str) -> Mutation:
        body = self._body()
        _set(body, self.rng.choice(self.seed.keep), self.rng.choice(CAP_BAD))
        return self._mutation(op, dumps(body))

    def _structural(self, op: str) -> Mutation:
        body = self._body()
        steps = [self.rng.choice(["drop", "wrong type", "nest", "unknown field"]) for _ in range(3)] \
            if op == "mixed" else [op]
        for step in steps:
            self._step(body, step)
        return self._mutation(f"{op} ({', '.join(steps)})" if op == "mixed" else op, dumps(body))

    def _step(self, body: Any, step: str) -> None:
        """One change to the decoded body, in place."""
        paths = [p for p in _paths(body) if p and _free(p, self.seed.keep)]
        if step == "unknown field":
            holders = [p for p in _paths(body) if _free(p, self.seed.keep) and isinstance(_at(body, p), dict)]
            if holders:
                _at(body, self.rng.choice(holders))[self.rng.choice(UNKNOWN_KEYS)] = self.rng.choice(WRONG)
            return
        if not paths:
            return
        path = self.rng.choice(paths)
        if step == "drop":
            _drop(body, path)
        elif step == "wrong type":
            _set(body, path, self.rng.choice(WRONG))
        else:
            _set(body, path, _deep(self.rng.choice(DEPTHS), self.rng.choice("[{")))


def _at(body: Any, path: Path) -> Any:
    for key in path:
        body = body[key]
    return body


def mutations(seed: Seed, rng: random.Random, count: int) -> list[Mutation]:
    """The seed request, then ``count`` mutations of it."""
    mutator = Mutator(seed, rng)
    return [mutator.original()] + [mutator() for _ in range(count)]
