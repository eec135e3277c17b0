"""Language identification with py3langid (its model ships with the package: no download).

The language (ISO 639-1, e.g. `en`) is recorded for every prose document; with a non-empty
`[corpus] languages` allow-list, other languages are dropped as `filtered:language`. Judged on
the first 2,000 characters: enough for a stable guess, and bounded time on huge documents.

Speed, with the same answer as `py3langid.classify`: py3langid counts its byte n-gram features
by walking a DFA over the text's UTF-8 bytes in a Python loop, one step per byte (about half of
its ~0.9 ms for 2,000 characters; most of the rest is converting its float16 table). That DFA is an Aho-Corasick
automaton: its state after a byte is the longest suffix of the bytes read so far that is a prefix
of a feature, so it is fixed by the last `depth` bytes alone (depth = the longest feature, 6
bytes in the shipped model, measured from the automaton at load). So the state at every
position is found at once, by `depth` numpy steps of the DFA over all positions' windows, and
the features are counted with numpy (`np.unique`) and scored by py3langid's formula
(`_sparse_score`) in the order its loop would produce them, with its table already in float32:
the same floats, the same winner. When the model does not have the expected shape
(another py3langid version), the plain `classify` is used. tests/clean/test_language.py compares
the two on prose in many languages and on random bytes.
"""

from __future__ import annotations

from functools import cache

import numpy as np

SAMPLE = 2000


def detect_language(text: str) -> str:
    """The most likely language code of `text`."""
    language, _ = _identifier().classify(text[:SAMPLE])
    return str(language)


@cache
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    class WindowedIdentifier(LanguageIdentifier):
        """py3langid's identifier with its per-byte DFA walk replaced by the window walk (see above)."""

        __slots__ = ("_window_feature", "_feature_scores")

        def _raw_score(self, text: bytes):  # (classes,) float32, as LanguageIdentifier._raw_score
            visits = None if self._window_feature is None else self._window_feature.counts(text)
            if visits is None:
                return super()._raw_score(text)  # no feature at all (py3langid's floor value), or another model layout
            features, counts = visits
            # py3langid's `_sparse_score` on arrays it would build from a {feature: count} dict:
            # the same float32 counts in the same order, so the same product.
            return np.log1p(counts.astype(np.float32)) @ self._feature_scores[features] + self.nb_pc

    identifier = WindowedIdentifier.from_model_file(MODEL_FILE, norm_probs=False)  # numpy .npz, not a pickle
    identifier._window_feature = None
    if _has_expected_model(identifier):
        identifier._window_feature = _WindowFeatures(identifier.tk_nextmove, identifier.tk_row, identifier.tk_output)
        # The (features, classes) table as float32 once (+57 MB), instead of numpy converting the
        # float16 rows a document uses on every call (3-4x the product itself); float16 → float32
        # is exact, so the product is the same.
        identifier._feature_scores = identifier.nb_ptc.astype(np.float32)
    return identifier


def _has_expected_model(identifier) -> bool:
    """The DFA layout this module reads (py3langid 0.4: flat `tk_nextmove`, row bases, one output per state)."""
    output = getattr(identifier, "tk_output", None)
    needed = ("tk_nextmove", "tk_row", "_rowbase", "nb_ptc", "_sparse_score", "_raw_score")
    has_names = all(hasattr(identifier, name) for name in needed)
    return has_names and isinstance(output, list) and all(isinstance(f, int) for f in output[:100])


class _WindowFeatures:
    """The DFA's feature at every byte position, all positions at once (see the module docstring).

    The state after byte i is the automaton run from its start over bytes i-depth+1 .. i: `depth`
    numpy steps over the whole text instead of one Python step per byte. The first depth-1
    positions, which have a shorter history, are walked one by one as py3langid does.
    """

    def __init__(self, nextmove, row_of_state, output: list[int]) -> None:
        self.nextmove = np.frombuffer(nextmove, dtype=np.dtype(nextmove.typecode))  # (rows * 256,) → state
        self.rowbase = np.asarray(row_of_state, dtype=np.int64) << 8  # state → its row's offset
        self.output = np.asarray(output, dtype=np.int64)  # state → feature, -1: none
        self.depth = _automaton_depth(nextmove, row_of_state, len(output))

    def counts(self, data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
        """(features, counts) in the order py3langid's `visit_counts` makes its {feature: count}
        dict (first occurrence first); None if there is none."""
        size = len(data)
        states = np.empty(size, dtype=np.int64)
        head = min(size, self.depth - 1)
        state = 0
        for i in range(head):
            state = self.nextmove[self.rowbase[state] + data[i]]
            states[i] = state
        if size > head:
            data_bytes = np.frombuffer(data, dtype=np.uint8)
            window_states = np.zeros(size - head, dtype=np.int64)  # (positions,): every window starts at state 0
            for back in range(self.depth - 1, -1, -1):
                window_states = self.nextmove[self.rowbase[window_states] + data_bytes[head - back : size - back]]
            states[head:] = window_states
        features = self.output[states]
        features = features[features >= 0]  # positions without a feature (-1) count for nothing
        if not features.size:
            return None
        # Counted with numpy instead of a Counter over a Python list (3x faster): sorted by
        # feature, then put back in the order of each feature's first position.
        unique, first, counts = np.unique(features, return_index=True, return_counts=True)
        order = np.argsort(first)
        return unique[order], counts[order]


def _automaton_depth(nextmove, row_of_state, states: int) -> int:
    """The longest shortest path from the start state (the length of the longest feature): a
    breadth-first walk, one numpy step per level (~0.1 s once per process)."""
    table = np.frombuffer(nextmove, dtype=np.dtype(nextmove.typecode)).reshape(-1, 256)  # (rows, byte) → state
    rows = np.asarray(row_of_state)
    depth = np.full(states, -1)
    depth[0] = 0
    frontier, level = np.array([0]), 0
    while frontier.size:
        level += 1
        reached = np.zeros(states, dtype=bool)
        reached[table[np.unique(rows[frontier])].ravel()] = True
        frontier = np.flatnonzero(reached & (depth < 0))
        depth[frontier] = level
    return int(depth.max())
