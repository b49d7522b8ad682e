"""Group roleplay formats: one system prompt naming every character, then one block per post.

lyra:   [INST]{role}\n{content}[/INST] blocks back to back, roles system/user/model, ending with <|im_end|>.
chatml: <|im_start|>{role}\n{content}<|im_end|>\n blocks, roles system/user/assistant.
"""

from __future__ import annotations

from grouprp.formats.base import Format, TextBuilder
from grouprp.schema import Entry, Example

SYSTEM_INTRO = ("You are involved in a multi-character internet-style roleplaying session with a human user, who is "
                "playing as {user}. Do not generate dialogue for the user's character, {user}. "
                "Focus on the other characters.")
END_OF_EXAMPLE = "<|im_end|>"


def system_prompt(entry: Entry) -> str:
    """The system prompt: the user's character, then every other character of the entry with its bio."""
    lines = [SYSTEM_INTRO.format(user=entry.user), "[Human User]", entry.user]
    if entry.user in entry.bios:
        lines.append(f"Character Bio: {entry.bios[entry.user]}")
    lines.append("[Involved Characters]")
    for character in entry.characters:
        if character == entry.user:
            continue
        lines.append(character)
        if character in entry.bios:
            lines.append(f"Character Bio: {entry.bios[character]}")
        lines.append("---")
    lines.append("The roleplay begins now.")
    return "\n".join(lines)


class GroupFormat(Format):
    """Blocks of `{open}{role}\n{content}{close}{between}`; trained: each model block's content and close marker,
    then the end marker. Subclasses only say what their markers are."""

    open = ""
    close = ""
    between = ""
    end = ""
    role_names = {"system": "system", "user": "user", "model": "model"}

    def render(self, entry: Entry) -> Example:
        last = next((t.character for t in reversed(entry.turns[entry.context:]) if t.role == "model"), "")
        return self._history(entry).add(self.end, trained=True, marker=True, owner=last).build()

    def prompt(self, entry: Entry, speaker: str = "") -> Example:
        """The entry so far, then an open model block: with `speaker`, the model writes that character's turn after
        `Name:` (no space: in training the space is the first token of the reply); without, it writes the name of
        the character who speaks next, as it learned to."""
        out = self._history(entry).add(self.open, marker=True).add(f"{self.role_names['model']}\n")
        return out.add(f"{speaker}:" if speaker else "").build()

    def system_block(self, entry: Entry) -> Example:
        """The system block alone, as it begins the entry's rendering."""
        out = TextBuilder()
        self._block(out, "system", system_prompt(entry), trained=False)
        return out.build()

    def _history(self, entry: Entry) -> TextBuilder:
        out = TextBuilder()
        self._block(out, "system", system_prompt(entry), trained=False)
        for number, turn in enumerate(entry.turns):
            trained = turn.role == "model" and number >= entry.context
            self._block(out, turn.role, turn.text, trained=trained, name=turn.character)
        return out

    def _block(self, out: TextBuilder, role: str, text: str, trained: bool, name: str = "") -> None:
        out.add(self.open, marker=True).add(f"{self.role_names[role]}\n")
        if name:
            out.add(f"{name}: ", trained=trained and self.train_on_names, owner=name)
        out.add(text, trained=trained, owner=name).add(self.close, trained=trained, marker=True, owner=name)
        out.add(self.between)


class Lyra(GroupFormat):
    """`[INST]role\ncontent[/INST]` blocks back to back, ending with `<|im_end|>`."""

    name = "lyra"
    open = "[INST]"
    close = "[/INST]"
    end = END_OF_EXAMPLE
    stop_strings = ("[INST]", END_OF_EXAMPLE)  # the next block, or the end of the example


class ChatML(GroupFormat):
    """`<|im_start|>role\ncontent<|im_end|>\n` blocks; the newline after `<|im_end|>` is never trained."""

    name = "chatml"
    open = "<|im_start|>"
    close = "<|im_end|>"
    between = "\n"
    role_names = {"system": "system", "user": "user", "model": "assistant"}
    stop_strings = ("<|im_end|>",)
