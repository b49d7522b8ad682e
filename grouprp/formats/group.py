"""Group roleplay formats: one system prompt naming every character, then one block per post.

lyra:   [INST]{role}\n{content}[/INST] blocks back to back, roles system/user/model, ending with <|im_end|>.
chatml: <|im_start|>{role}\n{content}<|im_end|>\n blocks, roles system/user/assistant.
"""

from __future__ import annotations

from grouprp.formats.base import Format, TextBuilder
from grouprp.schema import Entry, Example, Turn

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


class Lyra(Format):
    """`[INST]role\\ncontent[/INST]` blocks; trained: each model block's content and `[/INST]`, and the end marker."""

    name = "lyra"

    def render(self, entry: Entry) -> Example:
        out = TextBuilder().add(f"[INST]system\n{system_prompt(entry)}[/INST]")
        for turn in entry.turns:
            model = turn.role == "model"
            out.add(f"[INST]{turn.role}\n")
            _add_content(out, turn, trained=model, train_name=self.train_on_names)
            out.add("[/INST]", trained=model)
        return out.add(END_OF_EXAMPLE, trained=True).build()


class ChatML(Format):
    """`<|im_start|>role\\ncontent<|im_end|>\\n` blocks; trained: each assistant content and its `<|im_end|>`."""

    name = "chatml"

    def render(self, entry: Entry) -> Example:
        out = TextBuilder().add(f"<|im_start|>system\n{system_prompt(entry)}<|im_end|>\n")
        for turn in entry.turns:
            model = turn.role == "model"
            out.add(f"<|im_start|>{'assistant' if model else 'user'}\n")
            _add_content(out, turn, trained=model, train_name=self.train_on_names)
            out.add("<|im_end|>", trained=model).add("\n")
        return out.build()


def _add_content(out: TextBuilder, turn: Turn, trained: bool, train_name: bool) -> None:
    out.add(f"{turn.character}: ", trained=trained and train_name)
    out.add(turn.text, trained=trained)
