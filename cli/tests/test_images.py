"""Image files named in a prompt are attached for vision models (``ollama run llava "describe ./photo.png"``)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import pytest
from corral_cli.errors import CliError
from corral_cli.images import extract_images, file_names, names_a_file, unescape
from corral_cli.interactive import History, Repl
from corral_cli.main import main
from corral_cli.session import RunOptions

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 40
FINAL = {"model": "m", "response": "", "done": True, "done_reason": "stop"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photo.png").write_bytes(PNG)
    (tmp_path / "my cat.JPG").write_bytes(JPEG)
    (tmp_path / "notes.png").write_text("not an image")
    return tmp_path


def test_paths_are_found_as_ollama_finds_them() -> None:
    assert file_names("describe ./photo.png and /tmp/a\\ b.jpeg, C:\\x\\y.webp or photo.png") == [
        "./photo.png", "/tmp/a\\ b.jpeg", "C:\\x\\y.webp"]
    assert unescape("/tmp/a\\ b\\(1\\).png") == "/tmp/a b(1).png"
    assert names_a_file("/tmp/x.png what is it") and not names_a_file("/set verbose")


def test_files_are_attached_and_cut_from_the_prompt(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompt, images = extract_images("describe ./photo.png then ./my\\ cat.JPG please ./missing.png")
    assert prompt == "describe  then  please ./missing.png"  # a path that is no file stays as typed
    assert images == [b64(PNG), b64(JPEG)]
    assert capsys.readouterr().err == "Added image './photo.png'\nAdded image './my cat.JPG'\n"


def test_a_file_that_is_no_image_is_an_error(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CliError, match="invalid image type: text/plain; charset=utf-8"):
        extract_images("what is ./notes.png")
    assert capsys.readouterr().err == "Couldn't process image: \"invalid image type: text/plain; charset=utf-8\"\n"


def _generate(server, capabilities: list[str]) -> None:
    server.on("POST", "/api/show", httpx.Response(200, json={"details": {}, "capabilities": capabilities}))
    server.on("POST", "/api/generate", server.ndjson({"model": "m", "response": "A red square.", "done": False},
                                                     FINAL))


def test_run_attaches_images_for_a_vision_model(server, photos: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    _generate(server, ["completion", "vision"])

    assert main(["run", "m", "describe ./photo.png"], client=server.client()) == 0

    assert server.sent("POST", "/api/generate")[0].json() == {"model": "m", "prompt": "describe",
                                                              "images": [b64(PNG)]}
    captured = capsys.readouterr()
    assert captured.out == "A red square.\n\n" and captured.err == "Added image './photo.png'\n"


def test_run_sends_the_path_as_text_to_a_model_without_vision(server, photos: Path, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    _generate(server, ["completion"])

    assert main(["run", "m", "describe ./photo.png"], client=server.client()) == 0

    assert server.sent("POST", "/api/generate")[0].json() == {"model": "m", "prompt": "describe ./photo.png"}


def test_the_session_attaches_images_and_a_path_first_is_a_prompt(server, photos: Path, capsys) -> None:
    server.on("POST", "/api/chat", server.ndjson({"message": {"role": "assistant", "content": "Red."}, "done": False},
                                                 {"message": {"role": "assistant", "content": ""}, "done": True}))
    opts = RunOptions(model="m", multimodal=True)
    lines = iter(["what is ./photo.png", f"{photos}/my\\ cat.JPG and this?", "/?"])

    def read_line(prompt: str) -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    assert Repl(server.client(), opts, read_line=read_line, history=History(None)).run() == 0

    sent = [r.json()["messages"][-1] for r in server.sent("POST", "/api/chat")]
    assert sent == [{"role": "user", "content": "what is", "images": [b64(PNG)]},
                    {"role": "user", "content": "and this?", "images": [b64(JPEG)]}]
    captured = capsys.readouterr()
    assert "Unknown command" not in captured.out
    assert "Use /path/to/file to include .jpg, .png, or .webp images.\n" in captured.err
