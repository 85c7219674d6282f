"""The registry of model runtimes and formats (pipeline/runtimes.py) feeds flags, checks, docs."""

import re
from pathlib import Path

import pytest

from footprints.errors import ConfigError
from footprints_app import cli
from pipeline import runtimes

ROOT = Path(__file__).resolve().parent.parent


def _choices(command: str, dest: str = "runtime") -> list[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return list(next(a for a in sub._actions if a.dest == dest).choices)


@pytest.mark.parametrize("command", ["score", "segment"])
def test_the_runtime_flag_offers_auto_and_every_registered_runtime(command):
    assert _choices(command) == ["auto", "tensorflow", "onnxruntime"]
    assert tuple(_choices(command)) == runtimes.CHOICES


def test_the_model_format_flag_offers_the_registered_formats():
    assert _choices("score", "model_format") == ["savedmodel", "tfx"]
    assert tuple(_choices("score", "model_format")) == runtimes.MODEL_FORMATS


def test_the_checks_use_the_registry(tmp_path):
    from pipeline.inference import handlers, onnx_runtime

    assert onnx_runtime.RUNTIMES == runtimes.CHOICES
    assert onnx_runtime.CONCRETE_RUNTIMES == ("tensorflow", "onnxruntime")
    with pytest.raises(ConfigError, match="must be one of"):
        onnx_runtime.resolve_runtime(str(tmp_path), "tflite")
    assert onnx_runtime.resolve_runtime(str(tmp_path), "tensorflow") == "tensorflow"
    with pytest.raises(ConfigError, match="--model-format 'onnx' must be one of"):
        handlers.check_model(str(tmp_path), "onnx")


def test_the_docs_table_lists_every_registered_runtime():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text[text.index("### a model runtime") :]
    section = section[: section.index("\n### ")] if "\n### " in section else section
    rows = re.findall(r"^\| `([a-z_]+)` \| `([a-z_-]+)` \| (.+?) \|$", section, re.M)
    assert rows == [(r.name, r.package, r.serves) for r in runtimes.RUNTIMES.values()]
