import pytest
import torch

from hap.engine import metrics
from hap.errors import UserError
from hap.models import ModelNotFoundError, load_model, pick_device
from hap.tasks import make_task
from hap.tasks.base import sample_examples, tokenize
from hap.tasks.ioi import ioi_example


def test_default_model_is_a_bridge_with_the_patching_hooks(model):
    assert model.name == "hap-default"
    assert model.cfg.use_split_qkv_input and model.cfg.use_attn_result
    assert not any(p.requires_grad for p in model.parameters())
    names = set(model.hook_dict)
    for hook in ("blocks.1.hook_q_input", "blocks.1.attn.hook_result", "blocks.1.hook_mlp_in"):
        assert hook in names


def test_default_model_solves_ioi_on_heldout_prompts(model):
    # Fresh prompts from name/template combinations the training corpus never contained.
    data = tokenize(sample_examples(ioi_example, 300, seed=777, heldout=True), model.tokenizer)
    with torch.no_grad():
        logits = metrics.at_position(model(data.clean), data.position)
    assert metrics.accuracy(logits, data).mean() >= 0.95
    assert metrics.logit_diff(logits, data).mean() >= 3.0


@pytest.mark.parametrize("name", ["greater-than", "gendered-pronoun"])
def test_default_model_solves_the_other_tasks(model, name):
    data = make_task(name, model.tokenizer, n_train=0, n_val=0, n_test=200, seed=5).test
    with torch.no_grad():
        logits = metrics.at_position(model(data.clean), data.position)
    assert metrics.accuracy(logits, data).mean() >= 0.9


def test_local_path_loads_the_same_weights(model):
    from hap.models import DEFAULT_MODEL_DIR

    other = load_model(DEFAULT_MODEL_DIR, device="cpu")
    tokens = torch.tensor([[0, 5, 6, 7]])
    with torch.no_grad():
        assert torch.equal(other(tokens), model(tokens))


def test_missing_models_fail_with_the_fix_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="offline"):
        load_model("no-such-org/no-such-model-xyz")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model("./no/such/dir")
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_model(tmp_path)


def test_device_choice():
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device(None).type == expected
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cpu"):
            pick_device("cuda")
