"""Single-character format: a persona/traits/scenario/chat-history prompt, then `{char}: {reply}` and EOS.

Trained: the reply and the tokenizer's EOS token (appended after the text); `{char}: ` only with
train_on_names (off by default: a model trained on it learns to repeat its own name).
"""

from __future__ import annotations

from grouprp.formats.base import Format, TextBuilder
from grouprp.schema import Example

PROMPT = """You are an expert roleplaying model that specializes in playing the character {char} from {source}. \
Below is some information about {char}'s personality and traits. Use this information to roleplay as {char} in a \
conversation whose setting is described by the "scenario" below.

Character's description of their own personality, told in a narrative format:
{persona}

Traits list: {char}'s persona = [ {traits} ]

Scenario: {scenario}

### Instruction:
Write {char}'s next reply in a chat between {user} and {char}. Write a single reply only.

### Chat history:
{history}

### Response:
"""


class AliChat(Format):
    name = "alichat"

    def __init__(self, train_on_names: bool = False, card=None, character: str = "", user_label: str = "{user}"):
        super().__init__(train_on_names)
        if card is None:
            raise ValueError("the alichat format needs a character card")
        self.card = card
        self.character = character or card.name
        self.user_label = user_label

    def render(self, reply) -> Example:
        char = self.character
        out = TextBuilder().add(self._prompt(reply)).add(f"{char}: ", trained=self.train_on_names, owner=char)
        return out.add(reply.text, trained=True, owner=char).build(append_eos=True)

    def prompt(self, reply, speaker: str = "") -> Example:
        """The prompt of a reply, up to `{char}:` (the space after it begins the reply's first token in training;
        the reply's own text is not used)."""
        return TextBuilder().add(self._prompt(reply)).add(f"{self.character}:").build()

    def _prompt(self, reply) -> str:
        char, user = self.character, self.user_label
        pairs = "\n".join(f"{user}: {question}\n{char}: {answer}" for question, answer in self.card.persona)
        examples = "\n".join(f"{user if role == 'user' else char}: {text}" if role else ""
                              for role, text in self.card.examples)  # a Tavern card's example dialogue
        persona = "\n\n".join(part for part in (self.card.description, pairs, examples) if part)
        history = "\n".join(f"{speaker}: {text}" if speaker else text for speaker, text in reply.history)
        return PROMPT.format(char=char, source=self.card.source, persona=persona, traits=", ".join(self.card.traits),
                             scenario=reply.scenario, user=user, history=history)
