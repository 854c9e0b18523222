"""FusedBert computes what Hugging Face's BertModel computes, with the same weights and names."""

from __future__ import annotations

import pytest
import torch
from tiny_models import build_tiny_bert

from profner_models.models.bert import FusedBert
from profner_models.opcount import OpCounter


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(build_tiny_bert(tmp_path_factory.mktemp("bert")))
    model.pooler = None
    return model


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    ids = torch.randint(5, 300, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # padded rows: padding must not leak into the words
    mask[2, 2:] = 0
    return ids, mask


def test_outputs_and_gradients_equal_bert_model(tiny_bert):
    fused = FusedBert.from_hugging_face(tiny_bert)
    ids, mask = batch()
    tiny_bert.eval(), fused.eval()
    theirs = tiny_bert(input_ids=ids, attention_mask=mask).last_hidden_state
    ours = fused(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-5)
    (theirs[real] ** 2).sum().backward()
    (ours[real] ** 2).sum().backward()
    layer = tiny_bert.encoder.layer[1]
    size = tiny_bert.config.hidden_size
    key = fused.layers[1].qkv_weight.grad[:, size : 2 * size].t()
    torch.testing.assert_close(key, layer.attention.self.key.weight.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fused.layers[1].down_bias.grad, layer.output.dense.bias.grad,
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fused.embeddings.position_embeddings.weight.grad,
                               tiny_bert.embeddings.position_embeddings.weight.grad,
                               atol=1e-4, rtol=1e-4)


def test_every_layers_states_equal_bert_models(tiny_bert):
    fused = FusedBert.from_hugging_face(tiny_bert).eval()
    ids, mask = batch()
    tiny_bert.eval()
    theirs = tiny_bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    ours = fused(ids, mask, output_hidden_states=True)
    assert len(ours.hidden_states) == tiny_bert.config.num_hidden_layers + 1 == len(theirs)
    real = mask.bool()
    for mine, hf in zip(ours.hidden_states, theirs):
        torch.testing.assert_close(mine[real], hf[real], atol=1e-5, rtol=1e-5)
    assert ours.hidden_states[-1] is not None and torch.equal(ours.hidden_states[-1],
                                                              ours.last_hidden_state)
    assert fused(ids, mask).hidden_states is None


def test_state_dict_speaks_hugging_face_names_and_round_trips(tiny_bert):
    fused = FusedBert.from_hugging_face(tiny_bert)
    theirs = tiny_bert.state_dict()
    ours = fused.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name
        assert ours[name].is_contiguous(), name  # safetensors writes them as they are
    again = FusedBert(tiny_bert.config)
    again.load_state_dict(ours, strict=True)
    ids, mask = batch()
    fused.eval(), again.eval()
    assert torch.equal(again(ids, mask).last_hidden_state, fused(ids, mask).last_hidden_state)


def test_a_missing_tensor_is_named_by_strict_loading(tiny_bert):
    state = tiny_bert.state_dict()
    del state["encoder.layer.1.attention.self.key.bias"]
    with pytest.raises(RuntimeError, match=r"layers\.1\.qkv_bias"):
        FusedBert(tiny_bert.config).load_state_dict(state, strict=True)


def test_other_architectures_are_declined_with_the_reason(tiny_bert):
    config = tiny_bert.config.__class__.from_dict(tiny_bert.config.to_dict())
    assert FusedBert.supports(config) is None
    config.hidden_act = "silu"
    assert FusedBert.supports(config) == "its activation"
    with pytest.raises(ValueError, match="its activation"):
        FusedBert(config)
    config.hidden_act, config.model_type = "gelu", "distilbert"
    assert FusedBert.supports(config) == "model_type is not 'bert'"


def test_a_training_step_dispatches_far_fewer_ops(tiny_bert):
    fused = FusedBert.from_hugging_face(tiny_bert)
    ids, mask = batch()
    counts = []
    for model, run in ((tiny_bert, lambda: tiny_bert(input_ids=ids, attention_mask=mask)
                        .last_hidden_state), (fused, lambda: fused(ids, mask).last_hidden_state)):
        model.train()
        with OpCounter() as ops:
            run().sum().backward()
        counts.append(ops.total)
    assert counts[1] < 0.7 * counts[0], counts


def test_the_backbone_runs_bert_fused_by_default_and_equals_the_hugging_face_module(tmp_path):
    from profner_models.models import BackboneContext, backbones

    source = build_tiny_bert(tmp_path / "bert")
    fused, plain = (backbones.build({"name": "transformer", "encoder": str(source), "fused": flag},
                                    context=BackboneContext()) for flag in (True, False))
    assert isinstance(fused.encoder, FusedBert) and not isinstance(plain.encoder, FusedBert)
    # one format on disk: either module loads the other's weights
    plain.load_state_dict(fused.state_dict(), strict=True)
    features = fused.featurize([["la", "enfermera", "trabaja"], ["el", "médico"]])
    fused.eval(), plain.eval()
    ours, theirs = fused(features), plain(features)
    torch.testing.assert_close(ours.words, theirs.words, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.sentence, theirs.sentence, atol=1e-5, rtol=1e-5)


def test_loading_a_checkpoint_is_quiet_and_a_truncated_one_is_named(tmp_path, capfd):
    from safetensors.torch import load_file, save_file

    from profner_models.models import BackboneContext, backbones

    source = build_tiny_bert(tmp_path / "bert")
    capfd.readouterr()
    backbones.build({"name": "transformer", "encoder": str(source)}, context=BackboneContext())
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in err + out and "Loading weights" not in err + out
    weights = load_file(str(source / "model.safetensors"))
    key = next(k for k in weights if k.endswith("encoder.layer.1.output.dense.weight"))
    del weights[key]
    save_file(weights, str(source / "model.safetensors"))
    with pytest.raises(ValueError, match=r"lacks or misfits 1 weights .*layer\.1\.output\.dense"):
        backbones.build({"name": "transformer", "encoder": str(source)}, context=BackboneContext())
