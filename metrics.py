"""
Word error rate, as the Whisper paper counts it: hypotheses and references both go through
Whisper's English text normaliser, then jiwer counts substitutions, deletions and insertions
over the whole corpus. eval.py, train.py and bench.py all score with this one function.
"""
from functools import lru_cache


@lru_cache(maxsize=None)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English text normaliser, as word_error_rate applies it to both sides."""
    return _normalizer()(text)


def word_error_rate(references: list, hypotheses: list) -> float:
    """Corpus WER (total errors / total reference words) after Whisper's English normalisation.
    Pairs whose reference normalises to nothing are dropped (jiwer can't score an empty reference)."""
    import jiwer

    normalize = _normalizer()
    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses)]
    pairs = [(r, h) for r, h in pairs if r.strip()]
    if not pairs:
        return float("nan")
    return jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])
