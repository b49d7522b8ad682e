"""What every prompt format shares: building text piece by piece while recording which pieces are trained."""

from __future__ import annotations

from grouprp.schema import Example


class TextBuilder:
    """Concatenates pieces; `trained=True` pieces become trained spans (adjacent ones of the same `owner`, the
    character whose words they are, merge), and `marker=True` pieces are the format's own markers, the only text
    that may become control tokens."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._spans: list[list] = []  # [start, end, owner]
        self._markers: list[tuple[int, int]] = []
        self._length = 0

    def add(self, piece: str, trained: bool = False, marker: bool = False, owner: str = "") -> "TextBuilder":
        if trained and piece:
            if self._spans and self._spans[-1][1] == self._length and self._spans[-1][2] == owner:
                self._spans[-1][1] += len(piece)
            else:
                self._spans.append([self._length, self._length + len(piece), owner])
        if marker and piece:
            self._markers.append((self._length, self._length + len(piece)))
        self._parts.append(piece)
        self._length += len(piece)
        return self

    def build(self, append_eos: bool = False) -> Example:
        return Example("".join(self._parts), tuple((s, e) for s, e, _ in self._spans), append_eos,
                       tuple(self._markers), tuple(owner for _, _, owner in self._spans))


class Format:
    """A prompt format. Subclasses set `name` and implement `render` (a training example) and `prompt` (the text
    a model continues to write the next turn, rendered by the same code)."""

    name = ""
    stop_strings: tuple[str, ...] = ()  # where a generated turn ends (besides the tokenizer's EOS)
    close = ""  # the text that ends a turn, which a generated turn may end with: never shown

    def __init__(self, train_on_names: bool = True) -> None:
        self.train_on_names = train_on_names

    def render(self, entry) -> Example:
        raise NotImplementedError

    def prompt(self, entry, speaker: str = "") -> Example:
        raise NotImplementedError
