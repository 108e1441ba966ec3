"""Vision end to end: a SmolVLM-shaped projector on the real smollm2, through every way a user sends an image.

No vision model can be downloaded here, but SmolLM2-135M is SmolVLM-256M's text decoder: a projector GGUF with
SmolVLM's architecture (clip, idefics3) and seeded random weights (``corral_common.testing.projector``) is created
with the model from a Modelfile with two FROM lines, and drives llama.cpp's real image path. It sees noise, but
the same image always gives the same answer at temperature 0, and two different images different answers.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import ollama
import pytest

from corral_cli.bundled import BUNDLED
from corral_common.testing.projector import ProjectorShape, idefics3_projector, png

pytestmark = pytest.mark.e2e
MODEL = "smolvlm-synth:latest"
PROMPT = "Describe this picture."
# Tiles of 224 pixels, 16 embeddings each, through four encoder blocks 192 wide: tens of milliseconds a small
# picture, and the big one (36 tiles and the overview) an encoding long enough to watch other tokens during.
SHAPE = ProjectorShape(image_size=224, patch_size=14, width=192, ffn=384, blocks=4, heads=3, scale_factor=4)
RED, STRIPES = png(64, 64, (200, 30, 30)), png(448, 224, (20, 30, 230), stripes=8)
BIG = png(1344, 1344, (10, 200, 30), stripes=5)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def pictures(server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model (smollm2's GGUF + the projector GGUF, created with `corral create`) and the pictures on disk."""
    work = tmp_path_factory.mktemp("vision")
    (work / "mmproj.gguf").write_bytes(idefics3_projector(seed=7, shape=SHAPE))
    for name, data in (("red.png", RED), ("stripes.png", STRIPES), ("big.png", BIG)):
        (work / name).write_bytes(data)
    smollm2 = next(b for b in BUNDLED if b.name == "smollm2:135m")
    (work / "Modelfile").write_text(f"{smollm2.modelfile()}FROM {work / 'mmproj.gguf'}\n"
                                    "PARAMETER temperature 0\nPARAMETER num_predict 12\nPARAMETER num_ctx 2048\n")
    created = server.corral("create", MODEL, "-f", str(work / "Modelfile"))
    assert created.returncode == 0, created.stderr
    return work


def _generate(server, images: list[str], **extra) -> dict:
    body = {"model": MODEL, "prompt": PROMPT, "images": images, "stream": False, **extra}
    answer = httpx.post(f"{server.url}/api/generate", json=body, timeout=300)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _differ_and_repeat(answers: list[str]) -> None:
    red, stripes, red_again = answers
    assert red.strip() and stripes.strip()
    assert red == red_again, "the same image gave two answers at temperature 0"
    assert red != stripes, "two different images gave the same answer"


def test_the_model_sees_images(server, pictures: Path) -> None:
    shown = httpx.post(f"{server.url}/api/show", json={"model": MODEL}, timeout=60).json()
    assert "vision" in shown["capabilities"]


def test_api_generate(server, pictures: Path) -> None:
    answers = [_generate(server, [b64(image)]) for image in (RED, STRIPES, RED)]
    _differ_and_repeat([a["response"] for a in answers])


def test_prompt_eval_count_includes_the_image_tokens(server, pictures: Path) -> None:
    text_only = _generate(server, [])["prompt_eval_count"]
    red = _generate(server, [b64(RED)])["prompt_eval_count"]
    stripes = _generate(server, [b64(STRIPES)])["prompt_eval_count"]
    # red is one tile and the overview, stripes (448×224) two tiles and the overview, besides the wrapper text
    assert red >= text_only + 2 * SHAPE.tokens_per_tile and stripes >= red + SHAPE.tokens_per_tile


def test_api_chat(server, pictures: Path) -> None:
    def chat(image: bytes) -> str:
        body = {"model": MODEL, "stream": False,
                "messages": [{"role": "user", "content": PROMPT, "images": [b64(image)]}]}
        answer = httpx.post(f"{server.url}/api/chat", json=body, timeout=300)
        assert answer.status_code == 200, answer.text
        return answer.json()["message"]["content"]

    answers = [chat(image) for image in (RED, STRIPES, RED)]
    _differ_and_repeat(answers)
    assert answers[0] == _generate(server, [b64(RED)])["response"]  # the same prompt, however it came


def test_openai_chat_completions_with_a_data_url(server, pictures: Path) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")

    def complete(image: bytes) -> str:
        content = [{"type": "text", "text": PROMPT},
                   {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(image)}"}}]
        answer = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=12,
                                                messages=[{"role": "user", "content": content}])
        return answer.choices[0].message.content or ""

    answers = [complete(image) for image in (RED, STRIPES, RED)]
    _differ_and_repeat(answers)
    assert answers[0] == _generate(server, [b64(RED)])["response"]


def test_ollama_client_with_a_file_path(server, pictures: Path) -> None:
    client = ollama.Client(host=server.url)
    generated = [client.generate(model=MODEL, prompt=PROMPT, images=[pictures / name]).response
                 for name in ("red.png", "stripes.png", "red.png")]
    _differ_and_repeat(generated)
    chatted = client.chat(model=MODEL, messages=[{"role": "user", "content": PROMPT,
                                                  "images": [str(pictures / "stripes.png")]}])
    assert chatted.message.content == generated[1]


def test_cli_with_a_path_in_the_prompt(server, pictures: Path) -> None:
    runs = [server.corral("run", MODEL, f"{PROMPT} {pictures / name}") for name in ("red.png", "stripes.png",
                                                                                    "red.png")]
    for run, name in zip(runs, ("red.png", "stripes.png", "red.png")):
        assert run.returncode == 0, run.stderr
        assert f"Added image '{pictures / name}'" in run.stderr
    _differ_and_repeat([" ".join(run.stdout.split()) for run in runs])
    assert " ".join(runs[0].stdout.split()) == " ".join(_generate(server, [b64(RED)])["response"].split())


def _stream_times(server, body: dict, times: list[float], stop: threading.Event | None = None) -> None:
    """Stream /api/generate, noting when (wall clock) each piece of text arrived; stop set cancels it."""
    with httpx.stream("POST", f"{server.url}/api/generate", json=body, timeout=300) as answer:
        for line in answer.iter_lines():
            if line and json.loads(line).get("response"):
                times.append(time.time())
            if stop is not None and stop.is_set():
                return


def _encodings(server) -> list[tuple[float, float, int, int]]:
    """(start, end, positions, other_decodes) of every image encoding, from the inference service's "images encoded"
    log lines; other_decodes counts the batch loop's steps for other requests while the images were encoded."""
    found = []
    for line in (server.home.parent / "serve.log").read_text().splitlines():
        if '"images encoded"' in line:
            entry = json.loads(line)
            end = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
            found.append((end - entry["seconds"], end, entry["positions"], entry["other_decodes"]))
    return found


def test_a_text_stream_keeps_producing_tokens_while_an_image_is_encoded(server, pictures: Path) -> None:
    _generate(server, [b64(RED)])  # loaded, and the projector warmed up
    text_times: list[float] = []
    stop = threading.Event()
    counting = {"model": MODEL, "prompt": ", ".join(str(n) for n in range(1, 21)) + ",", "raw": True,
                "options": {"num_predict": 1000}}  # a raw count the model keeps continuing
    text = threading.Thread(target=_stream_times, args=(server, counting, text_times, stop), daemon=True)
    text.start()
    try:
        deadline = time.monotonic() + 120
        while len(text_times) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(text_times) >= 3, "the text stream never started"
        sent, image_times = time.time(), []
        _stream_times(server, {"model": MODEL, "prompt": PROMPT, "images": [b64(BIG)]}, image_times)
    finally:
        stop.set()
        text.join(300)
    assert image_times, "the image request answered nothing"
    start, end, positions, other_decodes = _encodings(server)[-1]  # the big picture's: 37 tiles
    assert sent < start < end < image_times[0] and positions >= 37 * SHAPE.tokens_per_tile
    # Encoding on the batch loop's thread would leave the text stream no step until it finished (0 decodes); the
    # server counts the steps itself, so a loaded machine that delays deliveries to this client cannot hide them.
    assert other_decodes >= 1, f"the text stream got no decode step in the {end - start:.2f} s of encoding"
    assert any(t > end for t in text_times), "the text stream stopped while the image was encoded"
