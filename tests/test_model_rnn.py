"""System 2 parts: registries, the rnn backbone, the heads, CRF transition constraints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rnn_support import fresh_config

from profner_models.models import (
    BackboneContext,
    BackboneOutput,
    HeadContext,
    backbones,
    task_heads,
)
from profner_models.models.heads import FORBIDDEN, transition_masks
from profner_models.models.joint import JointModel
from profner_models.models.rnn import spelling_keys
from profner_models.tasks import task_of

WORDS = [["Los", "médicos", "de", "guardia"], ["Enfermera"], ["la", "policía", "local", "ayuda", "hoy"]]
BIO = ["O", "B-PROFESION", "I-PROFESION", "B-SITUACION_LABORAL", "I-SITUACION_LABORAL"]
BILOU = ["O"] + [f"{p}-{t}" for t in ("PROFESION", "SITUACION_LABORAL") for p in "BILU"]


def valid(tags: list[str], scheme: str) -> bool:
    """Reference check of a tag sequence, written independently of transition_masks."""
    open_type = None
    for tag in tags:
        prefix, kind = (tag, None) if tag == "O" else tag.split("-", 1)
        if scheme == "BIO":
            if prefix == "I" and open_type != kind:
                return False
            open_type = kind if prefix in "BI" else None
        else:
            if open_type is not None and not (prefix in "IL" and kind == open_type):
                return False
            if open_type is None and prefix in "IL":
                return False
            open_type = kind if prefix in "BI" else None
    return scheme == "BIO" or open_type is None


def test_registries_know_the_system2_parts_and_name_the_unknown():
    assert "rnn.v1" in backbones.names()
    assert {"rnn_pooler.v1", "pooled_linear.v1", "sentence_linear.v1", "crf.v1",
            "linear_tagger.v1"} <= set(task_heads.names())
    assert backbones.resolve("rnn") == "rnn.v1"  # unversioned names (old model dirs) mean v1
    with pytest.raises(ValueError, match="model.backbone.name: unknown backbone 'rnm' .*did you mean 'rnn.v1'"):
        backbones.check({"name": "rnm"}, "model.backbone")
    with pytest.raises(ValueError, match="unknown backbone 'nope'.*rnn"):
        backbones.build({"name": "nope"}, context=BackboneContext())
    with pytest.raises(ValueError, match="must carry a version"):
        backbones.register("unversioned")


def test_backbone_gives_one_vector_per_word_independent_of_batch_partners():
    torch.manual_seed(0)
    block = {"name": "rnn", "words": {"dim": 8}, "chars": {"dim": 4, "hidden": 3},
             "gazetteer_dim": 2, "encoder": {"cell": "lstm", "layers": 2, "hidden": 5}}
    backbone = backbones.build(block, context=BackboneContext(train_words=WORDS, gazetteer_size=3))
    backbone.eval()
    flags = [[0, 1, 2, 2], [1], [0, 1, 2, 0, 0]]
    out = backbone(backbone.featurize(WORDS, flags))
    assert out.words.shape == (3, 5, 10) and backbone.word_dim == 10
    assert out.mask.tolist() == [[True] * 4 + [False], [True] + [False] * 4, [True] * 5]
    alone = backbone(backbone.featurize(WORDS[:1], flags[:1]))
    torch.testing.assert_close(alone.words[0], out.words[0, :4])
    unknown = backbone.featurize([["palabrainventada"]], [[0]])["word_ids"]
    assert unknown.tolist() == [[1]]  # UNK
    with pytest.raises(ValueError, match="gazetteer"):
        backbone.featurize(WORDS, None)


def test_a_gru_backbone_gives_one_text_what_it_gives_the_batch_and_remembers_each_spelling():
    """One text out of training takes the NumPy GRU and the char memo; a batch, the packed GRU.
    A word's memo entry does not depend on the longest word of its batch."""
    torch.manual_seed(0)
    block = {"name": "rnn", "words": {"dim": 8}, "chars": {"dim": 4, "hidden": 3, "cell": "gru"},
             "gazetteer_dim": 2, "encoder": {"cell": "gru", "layers": 1, "hidden": 5}}
    backbone = backbones.build(block, context=BackboneContext(train_words=WORDS, gazetteer_size=3))
    backbone.eval()
    flags = [[0, 1, 2, 2], [1], [0, 1, 2, 0, 0]]
    with torch.inference_mode():
        batch = backbone(backbone.featurize(WORDS, flags))
        spellings = len(backbone._char_memo)
        for row, (words, row_flags) in enumerate(zip(WORDS, flags)):
            alone = backbone(backbone.featurize([words], [row_flags]))
            torch.testing.assert_close(alone.words[0], batch.words[row, : len(words)],
                                       rtol=1e-5, atol=1e-6)
    assert len(backbone._char_memo) == spellings == len({w.lower() for doc in WORDS for w in doc})


@pytest.mark.parametrize("name", ["rnn_pooler", "pooled_linear"])
def test_document_heads_ignore_padding(name):
    torch.manual_seed(0)
    block = {"name": name, **({"cell": "gru", "hidden": 4} if name == "rnn_pooler" else {})}
    head = task_heads.build(block, context=HeadContext(word_dim=6, sentence_dim=0, labels=["0", "1"]))
    head.eval()
    words = torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 3 + [False] * 2, [True] * 5])
    scores = head(BackboneOutput(words, mask)).scores
    assert scores.shape == (2, 2)
    changed = words.clone()
    changed[0, 3:] = 100.0  # padding content must not matter
    torch.testing.assert_close(head(BackboneOutput(changed, mask)).scores, scores)
    torch.testing.assert_close(head(BackboneOutput(words[:1, :3], mask[:1, :3])).scores, scores[:1])


@pytest.mark.parametrize("scheme,labels", [("BIO", BIO), ("BILOU", BILOU)])
def test_transition_masks_match_the_scheme(scheme, labels):
    start, moves, end = transition_masks(labels, scheme)

    def in_context(a: str, b: str) -> list[str]:
        """a, b with what must come before a and after b for the pair alone to be judged."""
        before = [f"B-{a[2:]}"] if a[0] in "IL" else []
        after = [f"L-{b[2:]}"] if scheme == "BILOU" and b[0] in "BI" else []
        return before + [a, b] + after

    for i, a in enumerate(labels):
        assert bool(start[i]) == (a[0] not in "IL")
        assert bool(end[i]) == (scheme == "BIO" or a[0] not in "BI")
        for j, b in enumerate(labels):
            assert bool(moves[i, j]) == valid(in_context(a, b), scheme), (a, b)


@pytest.mark.parametrize("scheme,labels", [("BIO", BIO), ("BILOU", BILOU)])
def test_crf_never_emits_an_invalid_sequence_even_after_training(scheme, labels):
    torch.manual_seed(1)
    head = task_heads.build({"name": "crf", "size": 8},
                            context=HeadContext(word_dim=6, sentence_dim=0, labels=labels, scheme=scheme))
    optimizer = torch.optim.AdamW(head.parameters(), lr=0.5, weight_decay=1.0)
    words = torch.randn(16, 9, 6)
    mask = torch.ones(16, 9, dtype=torch.bool)
    mask[8:, 5:] = False
    # Train towards gold sequences full of invalid moves: the forbidden scores must not move.
    targets = torch.randint(0, len(labels), (16, 9))
    for _ in range(5):
        loss = head(BackboneOutput(words, mask), targets).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    emissions = torch.randn(64, 9, len(labels)) * 20  # strong random emissions, incl. I-/L- tags
    mask = torch.ones(64, 9, dtype=torch.bool)
    mask[32:, 4:] = False
    decoded = head.decode(emissions, mask)
    assert [len(seq) for seq in decoded] == [9] * 32 + [4] * 32
    for seq in decoded:
        assert valid([labels[i] for i in seq], scheme), [labels[i] for i in seq]
    assert (head.crf.transitions[head.forbidden_moves] == FORBIDDEN).all()
    assert (head.crf.start_transitions[head.forbidden_start] == FORBIDDEN).all()


def test_a_class_head_on_entity_words_learns_from_those_words_only():
    """``linear_tagger`` with ``words: entities`` (a MEDDOPROF CLASS head): its loss is the
    cross-entropy of the gold entities' words; padding and ``O`` words change nothing, and a
    batch without an entity gives a zero loss, not NaN."""
    torch.manual_seed(2)
    labels = ["O", "B-PACIENTE", "I-PACIENTE", "B-FAMILIAR", "I-FAMILIAR"]
    context = HeadContext(word_dim=6, sentence_dim=0, labels=labels, scheme="BIO")
    head = task_heads.build({"name": "linear_tagger", "words": "entities"}, context=context)
    words = torch.randn(2, 5, 6, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    targets = torch.tensor([[0, 3, 4, 0, 0], [1, 0, 0, 0, 0]])
    out = head(BackboneOutput(words, mask), targets)
    scores = head.scores(BackboneOutput(words, mask))
    read = torch.tensor([[False, True, True, False, False], [True, False, False, False, False]])
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(scores[read], targets[read]))
    out.loss.backward()
    assert words.grad[~read].abs().sum() == 0 and words.grad[read].abs().sum() > 0
    everyone = task_heads.build({"name": "linear_tagger"}, context=context)
    everyone.load_state_dict(head.state_dict())
    assert not torch.allclose(everyone(BackboneOutput(words, mask), targets).loss, out.loss)
    nothing = head(BackboneOutput(words, mask), torch.zeros(2, 5, dtype=torch.long)).loss
    assert nothing.item() == 0.0 and nothing.requires_grad
    with pytest.raises(ValueError, match="words"):
        task_heads.build({"name": "linear_tagger", "words": "some"}, context=context)


@pytest.mark.parametrize("tags", [3, 5, 9])
def test_viterbi_gives_the_paths_of_pytorch_crf(tags, loops):
    """In C (``_kernels.c``) and in NumPy (an install without a C compiler)."""
    from torchcrf import CRF

    from profner_models.models.heads import viterbi

    torch.manual_seed(tags)
    crf = CRF(tags, batch_first=True)
    for param in crf.parameters():
        torch.nn.init.normal_(param, std=2.0)
    emissions = torch.randn(40, 12, tags) * 3
    lengths = torch.randint(1, 13, (40,))
    lengths[0] = 12
    mask = torch.arange(12)[None, :] < lengths[:, None]
    expected = crf.decode(emissions, mask=mask)
    got = viterbi(emissions.numpy(), lengths.numpy(), crf.start_transitions.detach().numpy(),
                  crf.transitions.detach().numpy(), crf.end_transitions.detach().numpy())
    assert got == expected
    assert viterbi(emissions[:1, :1].numpy(), np.array([1]), *(t.detach().numpy() for t in (
        crf.start_transitions, crf.transitions, crf.end_transitions))) == crf.decode(
        emissions[:1, :1], mask=mask[:1, :1])


def test_joint_model_is_assembled_from_the_config_and_weights_the_losses():
    config = fresh_config()
    config["data"]["gazetteer"] = None
    labels = task_of(config).labels(config)
    assert labels == {"classify": ["0", "1"], "tag": BIO}
    torch.manual_seed(0)
    model = JointModel(config, labels, BackboneContext(train_words=WORDS))
    model.eval()
    features = model.backbone.featurize(WORDS)
    targets = {"classify": torch.tensor([1, 1, 0]), "tag": torch.zeros(3, 5, dtype=torch.long)}
    both = model.loss(model(features, targets)[1])
    model.loss_weights["tag"] = 0.0
    _, heads = model(features, targets)
    classify_only = model.loss(heads)
    expected = torch.nn.functional.cross_entropy(heads["classify"].scores, targets["classify"])
    assert heads["classify"].loss == expected  # each head computes its own loss
    torch.testing.assert_close(classify_only, expected)
    assert both > classify_only
    config["model"]["heads"]["summary"] = {"name": "rnn_pooler"}
    with pytest.raises(ValueError, match="summary"):
        task_of(config).labels(config)


def test_the_viterbi_kernel_refuses_a_length_outside_the_row():
    from profner_models import kernels

    if kernels.native is None:
        pytest.skip("the kernels are not built here")
    emissions, out = np.zeros((2, 4, 3), np.float32), np.zeros((2, 4), np.int64)
    start = end = np.zeros(3, np.float32)
    transitions = np.zeros((3, 3), np.float32)
    for lengths in ([4, 0], [5, 1]):
        with pytest.raises(ValueError, match=r"lengths\[\d\] = \d: must be in 1\.\.4"):
            kernels.native.viterbi(emissions, np.array(lengths), start, transitions, end, out)
    with pytest.raises(ValueError, match="lengths: expected a C-contiguous int64"):
        kernels.native.viterbi(emissions, np.array([4, 4], np.int32), start, transitions, end, out)


def test_spelling_keys_do_not_depend_on_the_batch_width_and_tell_spellings_apart():
    narrow = torch.tensor([[5, 0], [256, 7], [0, 0]])
    wide = torch.tensor([[5, 0, 0, 0], [256, 7, 0, 0], [0, 0, 0, 0], [5, 256, 0, 0], [256, 0, 0, 0],
                         [1, 0, 0, 0]])
    keys = spelling_keys(wide)
    assert spelling_keys(narrow) == keys[:3]
    assert keys[2] == b""  # a padding position
    assert len(set(keys)) == len(keys)  # 256 is not 1 followed by zeros, nor [5, 256] [5] + ...
