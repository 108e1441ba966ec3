"""The tables of ``list``, ``ps`` and ``show``, character for character as Ollama prints them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corral_cli.commands.models import render_list, render_ps
from corral_cli.commands.show import render_info
from corral_cli.table import render_table, wrap_string

NOW = datetime(2025, 5, 10, 12, 0, 0, tzinfo=UTC)


def _iso(when: datetime) -> str:
    return when.isoformat()


def test_list_table_matches_ollama():
    models = [
        {"name": "model1", "digest": "sha256:abc123", "size": 1024, "modified_at": _iso(NOW - timedelta(hours=24))},
        {"name": "model2", "digest": "sha256:def456", "size": 2048, "modified_at": _iso(NOW - timedelta(hours=48))},
    ]
    assert render_list(models, None, NOW) == (
        "NAME      ID              SIZE      MODIFIED     \n"
        "model1    sha256:abc12    1.0 KB    24 hours ago    \n"
        "model2    sha256:def45    2.0 KB    2 days ago      \n")


def test_list_table_of_a_tags_payload_with_prefix_filter():
    tags = {"models": [
        {"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 2019393189,
         "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
         "modified_at": "2025-05-10T04:58:30.123-07:00"},
        {"name": "smollm2:135m", "model": "smollm2:135m", "size": 98362432,
         "digest": "9077fe9d2ae1a4a2fcf2bd45e2c3edf5d63d09fa4f2c8a4c39d8bbf61d0f6cb5",
         "modified_at": "2025-05-10T11:59:59.5Z"},
        {"name": "Qwen3:0.6b", "model": "Qwen3:0.6b", "size": 522653767,
         "digest": "7df6b6e09427a769808717c0a93cadc4ae99ed4eb8bf5ca557c90846becea435",
         "modified_at": "2025-05-06T12:00:00Z"},
    ]}
    assert render_list(tags["models"], None, NOW) == (
        "NAME               ID              SIZE      MODIFIED               \n"
        "llama3.2:latest    a80c4f17acd5    2.0 GB    About a minute ago        \n"
        "smollm2:135m       9077fe9d2ae1    98 MB     Less than a second ago    \n"
        "Qwen3:0.6b         7df6b6e09427    522 MB    4 days ago                \n")
    assert render_list(tags["models"], "qwen", NOW) == (
        "NAME          ID              SIZE      MODIFIED   \n"
        "Qwen3:0.6b    7df6b6e09427    522 MB    4 days ago    \n")


def test_empty_list_prints_only_the_header():
    assert render_list([], None, NOW) == "NAME    ID    SIZE    MODIFIED \n"


def test_ps_table_of_a_ps_payload():
    models = [
        {"name": "gemma3:270m", "model": "gemma3:270m", "size": 567_000_000, "size_vram": 567_000_000,
         "digest": "e7d36fb2c3b3293cfe56d55889867a064b3a2b22e98335f2e6e8a387e081d6be",
         "expires_at": _iso(NOW + timedelta(minutes=4, seconds=30)), "context_length": 4096},
        {"name": "smollm2:135m", "model": "smollm2:135m", "size": 200, "size_vram": 104,
         "digest": "9077fe9d2ae1a4a2fcf2bd45e2c3edf5d63d09fa4f2c8a4c39d8bbf61d0f6cb5",
         "expires_at": _iso(NOW + timedelta(days=365 * 292)), "context_length": 8192},
        {"name": "qwen3:0.6b", "model": "qwen3:0.6b", "size": 1_200_000_000, "size_vram": 0,
         "digest": "7df6b6e09427a769808717c0a93cadc4ae99ed4eb8bf5ca557c90846becea435",
         "expires_at": _iso(NOW - timedelta(seconds=2)), "context_length": 2048},
    ]
    assert render_ps(models, None, NOW) == (
        "NAME            ID              SIZE      PROCESSOR          CONTEXT    UNTIL              \n"
        "gemma3:270m     e7d36fb2c3b3    567 MB    100% GPU           4096       4 minutes from now    \n"
        "smollm2:135m    9077fe9d2ae1    200 B     48%/52% CPU/GPU    8192       Forever               \n"
        "qwen3:0.6b      7df6b6e09427    1.2 GB    100% CPU           2048       Stopping...           \n")
    assert render_ps(models, "smol", NOW).splitlines()[1].startswith("smollm2:135m    ")


def test_long_cells_wrap_at_word_boundaries():
    assert wrap_string("the quick brown fox jumps over the lazy dog", 10) == [
        "the quick", "brown fox", "jumps over", "the lazy", "dog"]
    table = render_table([["", "a " * 20 + "end"]])
    # Minimal raggedness: 15 words (29 columns) then the rest, in a 30-column cell; like tablewriter,
    # the empty first cell of the continuation line is filled with two spaces.
    assert table == (
        "    " + " ".join(["a"] * 15) + " " + "    \n"
        "  " + "    " + "a a a a a end".ljust(30) + "    \n")


def _details(**extra):
    return {"details": {"family": "test", "parameter_size": "7B", "quantization_level": "FP16"}, **extra}


def test_show_bare_details():
    assert render_info(_details()) == (
        "  Model\n"
        "    architecture    test    \n"
        "    parameters      7B      \n"
        "    quantization    FP16    \n"
        "\n")


def test_show_model_info_with_lengths():
    info = _details(model_info={"general.architecture": "test", "general.parameter_count": 7_000_000_000,
                                "test.context_length": 0, "test.embedding_length": 0})
    assert render_info(info) == (
        "  Model\n"
        "    architecture        test    \n"
        "    parameters          7B      \n"
        "    context length      0       \n"
        "    embedding length    0       \n"
        "    quantization        FP16    \n"
        "\n")


def test_show_verbose_with_parameters_metadata_and_tensors():
    info = {
        "details": {"family": "test", "parameter_size": "8B", "quantization_level": "FP16"},
        "parameters": "\n\t\t\tstop up",
        "model_info": {"general.architecture": "test", "general.parameter_count": 8_000_000_000,
                       "some.true_bool": True, "some.false_bool": False,
                       "test.context_length": 1000, "test.embedding_length": 11434},
        "tensors": [{"name": "blk.0.attn_k.weight", "type": "BF16", "shape": [42, 3117]},
                    {"name": "blk.0.attn_q.weight", "type": "FP16", "shape": [3117, 42]}],
    }
    assert render_info(info, verbose=True) == (
        "  Model\n"
        "    architecture        test     \n"
        "    parameters          8B       \n"
        "    context length      1000     \n"
        "    embedding length    11434    \n"
        "    quantization        FP16     \n"
        "\n"
        "  Parameters\n"
        "    stop    up    \n"
        "\n"
        "  Metadata\n"
        "    general.architecture       test     \n"
        "    general.parameter_count    8e+09    \n"
        "    some.false_bool            false    \n"
        "    some.true_bool             true     \n"
        "    test.context_length        1000     \n"
        "    test.embedding_length      11434    \n"
        "\n"
        "  Tensors\n"
        "    blk.0.attn_k.weight    BF16    [42 3117]    \n"
        "    blk.0.attn_q.weight    FP16    [3117 42]    \n"
        "\n")


def test_show_capabilities_parameters_system_and_license():
    info = _details(
        capabilities=["completion", "tools"],
        parameters='stop                           "<|im_end|>"\ntemperature                    0.7',
        system="You are a pirate!\nAhoy, matey!\nWeigh anchor!\n\t\t\t",
        license="MIT License\nCopyright (c) Ollama\n",
    )
    assert render_info(info) == (
        "  Model\n"
        "    architecture    test    \n"
        "    parameters      7B      \n"
        "    quantization    FP16    \n"
        "\n"
        "  Capabilities\n"
        "    completion    \n"
        "    tools         \n"
        "\n"
        "  Parameters\n"
        '    stop           "<|im_end|>"    \n'
        "    temperature    0.7             \n"
        "\n"
        "  System\n"
        "    You are a pirate!    \n"
        "    Ahoy, matey!         \n"
        "    ...                  \n"
        "\n"
        "  License\n"
        "    MIT License             \n"
        "    Copyright (c) Ollama    \n"
        "\n")


def test_show_projector_and_requires():
    info = _details(projector_info={"general.architecture": "clip", "general.parameter_count": 133_700_000,
                                    "clip.vision.embedding_length": 0, "clip.vision.projection_dim": 0},
                    requires="0.19.0")
    assert render_info(info) == (
        "  Model\n"
        "    architecture    test      \n"
        "    parameters      7B        \n"
        "    quantization    FP16      \n"
        "    requires        0.19.0    \n"
        "\n"
        "  Projector\n"
        "    architecture        clip       \n"
        "    parameters          133.70M    \n"
        "    embedding length    0          \n"
        "    dimensions          0          \n"
        "\n")
