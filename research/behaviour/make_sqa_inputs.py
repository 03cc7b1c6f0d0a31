"""Inputs of the ``scienceqa_tiny`` behaviour case, written into one folder (no mrmkg import, so the
same bytes come out before and after a redesign of mrmkg):

    OUT/scienceqa/        the tests' 30-problem ScienceQA fixture (official layout), written by the
                          fixture generator given as the second argument (tests/fixtures/scienceqa/make_fixture.py)
    OUT/science-kg/       a dozen science facts as TSV (entities.tsv, relations.tsv, triples.tsv): the
                          test suite's ``science_kg()`` (tests/test_scienceqa_train.py), for ``mrmkg kg build``
    OUT/tiny-llama/       the suite's tiny random LLaMA (tests/test_model_common.py ``tiny_llm("llama")``,
                          seed 0) with its 40-word tokenizer, saved as a folder that ``load_llm`` reads

    python make_sqa_inputs.py OUT FIXTURE_GENERATOR
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

WORDS = ("the a is to as of what cat dog animal pet has fur tail red blue color answer question "
         "yes no sun sky bird wing fish water lives in on image paris france capital city").split()

ENTITIES = ["magnet", "iron", "glass", "duck", "webbed feet", "water", "fox", "fur", "rock", "solid", "granite",
            "sugar", "physical change", "dog", "noun", "jump", "verb", "Earth", "rotation", "day and night"]
RELATIONS = [("P1", "attracts"), ("P2", "has"), ("P3", "lives in"), ("P4", "is a"), ("P5", "causes"),
             ("P6", "dissolving is a")]
TRIPLES = [("Q0", "P1", "Q1"), ("Q3", "P2", "Q4"), ("Q3", "P3", "Q5"), ("Q6", "P2", "Q7"), ("Q8", "P4", "Q9"),
           ("Q10", "P4", "Q8"), ("Q11", "P6", "Q12"), ("Q13", "P4", "Q14"), ("Q15", "P4", "Q16"),
           ("Q17", "P2", "Q18"), ("Q18", "P5", "Q19"), ("Q0", "P2", "Q1")]


def tiny_tokenizer():
    """A word-level fast tokenizer (whitespace split) with <pad>=0, <s>=1, </s>=2, <unk>=3 (as the tests')."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>"] + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece()  # joins tokens with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def write_tiny_llama(out: Path, seed: int = 0) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=True,
                      initializer_range=0.3)
    model = LlamaForCausalLM(cfg)
    model.config._attn_implementation = "eager"
    model.eval().save_pretrained(out)
    tok.save_pretrained(out)


def write_science_kg(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "entities.tsv").write_text("".join(f"Q{i}\t{n}\n" for i, n in enumerate(ENTITIES)), encoding="utf-8")
    (out / "relations.tsv").write_text("".join(f"{r}\t{n}\n" for r, n in RELATIONS), encoding="utf-8")
    (out / "triples.tsv").write_text("".join("\t".join(t) + "\n" for t in TRIPLES), encoding="utf-8")


def main(out: str, generator: str) -> None:
    out_p = Path(out)
    out_p.mkdir(parents=True, exist_ok=True)
    spec = importlib.util.spec_from_file_location("make_scienceqa_fixture", generator)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write(out_p / "scienceqa")
    write_science_kg(out_p / "science-kg")
    write_tiny_llama(out_p / "tiny-llama")


if __name__ == "__main__":
    main(*sys.argv[1:3])
